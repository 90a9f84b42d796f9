import { IInfo } from '../api';
import { changedFields, initialForm, toSpec } from '../createForm';
import { nameFromPath } from '../model';

const info: IInfo = {
  version: '0.1.0', backend: 'local', managers: ['pip'], python_versions: ['3.11', '3.12', '3.13'], namespaces: ['default', 'team'],
  clusters: [{ name: 'local', namespaces: ['default', 'team'] }], default_python: '3.11',
  storages: [{ name: 'default', path: '/x', access_mode: 'ReadWriteMany' }], presets: [], base_packages: { pip: ['ipykernel'] }, limits: {}
};

describe('the form', () => {
  it("starts from the server's default Python, not the newest offered", () => {
    expect(initialForm(info, 'team').python).toBe('3.11');
    expect(initialForm({ ...info, default_python: undefined }, 'team').python).toBe('3.13');
    expect(initialForm(info, 'team').namespace).toBe('team');
    expect(initialForm(info, 'team').cluster).toBe('local');
  });

  it("is prefilled from a notebook's suggestion", () => {
    const form = initialForm(info, 'default', { name: 'trip-analysis', manager: 'pip', packages: 'six\nPyYAML\n', python: '3.12' });
    expect(toSpec(form)).toMatchObject({ name: 'trip-analysis', packages: 'six\nPyYAML\n', python: '3.12', labels: {}, gpu: 0 });
  });

  it('sends only the changed PATCH fields of an edit, and never the name or namespace', () => {
    const base = initialForm(info, 'default', { name: 'x', packages: 'six\n', labels: { team: 'a' }, description: 'd' });
    expect(changedFields(base, base)).toEqual({});
    expect(changedFields(base, { ...base, description: 'e', labels: [['team', 'b']] })).toEqual({ description: 'e', labels: { team: 'b' } });
    expect(changedFields(base, { ...base, name: 'y', namespace: 'team', packages: 'six\npandas\n' })).toEqual({ packages: 'six\npandas\n' });
  });

  it("names an environment after its notebook's file", () => {
    expect(nameFromPath('work/Trip Analysis (v2).ipynb')).toBe('trip-analysis-v2');
    expect(nameFromPath('__.ipynb')).toBe('from-notebook');
    expect(nameFromPath('x'.repeat(80) + '.ipynb')).toHaveLength(63);
  });
});
