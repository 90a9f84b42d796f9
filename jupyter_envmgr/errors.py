"""The one error type that crosses layers: it carries the HTTP status and a short reason code of API.md."""


class EnvmgrError(Exception):
    """A failure a client can act on: `message` says what is wrong and how to fix it."""

    def __init__(self, status: int, reason: str, message: str, field: str = ""):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.field = field

    def to_json(self) -> dict:
        body = {"message": self.message, "reason": self.reason}
        if self.field:
            body["field"] = self.field
        return body


def invalid(field: str, problem: str) -> EnvmgrError:
    """422 naming the field, as API.md asks of every validation failure."""
    return EnvmgrError(422, "invalid_field", f"{field}: {problem}", field.split("[")[0].split(".")[0])


def forbidden(field: str, problem: str) -> EnvmgrError:
    """403 for what a policy forbids; the message names the field and the setting to change."""
    return EnvmgrError(403, "forbidden", f"{field}: {problem}", field.split("[")[0].split(".")[0])


def not_found(name: str, namespace: str) -> EnvmgrError:
    return EnvmgrError(404, "not_found", f"no environment named {name!r} in namespace {namespace!r}")


def conflict(reason: str, message: str) -> EnvmgrError:
    return EnvmgrError(409, reason, message)
