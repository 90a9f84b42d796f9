import { IFormState, pairsToObject, rowOf, RULES, validateForm } from '../validation';

const form: IFormState = {
  name: 'good-name',
  manager: 'pip',
  packages: 'six\n',
  indexUrls: [''],
  labels: [['', '']],
  annotations: [],
  envVars: [],
  gpu: '0'
};

describe('the rules table', () => {
  it.each(['ab', 'torch-cpu', 'a1', '0x', 'x'.repeat(63)])('accepts the name %s', name => {
    expect(RULES.name(name)).toBeNull();
  });

  it.each(['', 'a', 'Bad', 'bad_name', '-x', 'x-', 'x'.repeat(64), 'a.b', 'a b'])('refuses the name "%s" with a reason', name => {
    expect(RULES.name(name)).toMatch(/\w/);
  });

  it('says why a name is wrong', () => {
    expect(RULES.name('Bad_Name')).toContain('lowercase');
    expect(RULES.name('a')).toContain('2-63');
  });

  it('checks label keys and values with the Kubernetes syntax', () => {
    expect(RULES.labelKey('team')).toBeNull();
    expect(RULES.labelKey('example.com/team')).toBeNull();
    expect(RULES.labelKey('bad key')).toBeTruthy();
    expect(RULES.labelKey('Bad_Prefix/k')).toMatch(/DNS subdomain/);
    expect(RULES.labelKey('x'.repeat(64))).toBeTruthy();
    expect(RULES.labelValue('')).toBeNull();
    expect(RULES.labelValue('v1.2_x')).toBeNull();
    expect(RULES.labelValue('bad value!')).toBeTruthy();
  });

  it('checks variable names, index URLs and GPU counts', () => {
    expect(RULES.envName('HF_HOME')).toBeNull();
    expect(RULES.envName('1X')).toBeTruthy();
    expect(RULES.indexUrl('https://mirror.example/simple')).toBeNull();
    expect(RULES.indexUrl('http://127.0.0.1:8080/simple')).toBeNull();
    expect(RULES.indexUrl('ftp://mirror.example')).toBeTruthy();
    expect(RULES.indexUrl('mirror.example')).toBeTruthy();
    expect(RULES.gpu('0')).toBeNull();
    expect(RULES.gpu('2')).toBeNull();
    for (const bad of ['-1', '1.5', '', 'two', '65']) {
      expect(RULES.gpu(bad)).toBeTruthy();
    }
  });
});

describe('a form', () => {
  it('has no errors when valid, ignoring empty rows', () => {
    expect(validateForm(form)).toEqual({});
  });

  it('reports each bad field under its API name, through the one table', () => {
    const errors = validateForm({
      ...form,
      name: 'Bad',
      packages: 'dependencies:\n  - six\n',
      indexUrls: ['ftp://x'],
      labels: [['bad key', 'v']],
      annotations: [['/x', 'v']],
      envVars: [['1X', 'v']],
      gpu: '-1'
    });
    expect(Object.keys(errors).sort()).toEqual(['annotations', 'env_vars', 'gpu', 'index_urls', 'labels', 'name', 'packages']);
    expect(errors.name).toBe(RULES.name('Bad'));
    expect(errors.packages).toMatch(/CONDA/);
    expect(errors.labels).toMatch(/^bad key: /);
  });

  it('checks packages the way the manager reads them', () => {
    expect(validateForm({ ...form, manager: 'conda', packages: 'numpy\n' }).packages).toMatch(/dependencies/);
    expect(validateForm({ ...form, manager: 'conda', packages: 'dependencies:\n  - numpy\n' }).packages).toBeUndefined();
    expect(validateForm({ ...form, manager: 'conda', packages: '' }).packages).toBeUndefined();
    expect(validateForm({ ...form, manager: 'pip', packages: 'dependencies:\n  - numpy\n' }).packages).toMatch(/CONDA/);
    expect(validateForm({ ...form, manager: 'pip', packages: '# comment\nnumpy>=2 ; python_version>"3"\n\n' }).packages).toBeUndefined();
  });

  it('turns key/value rows into objects without empty rows', () => {
    expect(pairsToObject([['a', '1'], ['', ''], ['b', '']])).toEqual({ a: '1', b: '' });
  });
});

describe('row errors', () => {
  it('find the row a server message quotes, or none', () => {
    const keys = ['team', 'bad key', ''];
    expect(rowOf("labels: key 'bad key': use 1-63 letters", keys)).toBe(1);
    expect(rowOf('bad key: use 1-63 letters', keys)).toBe(1);
    expect(rowOf('labels: must be an object', keys)).toBe(-1);
    expect(rowOf("index_urls: 'https://***@host/simple' is not allowed", ['https://a/simple', 'https://***@host/simple'])).toBe(1);
  });

  it('let option lines through to the server (the policy may allow -e)', () => {
    expect(RULES.pipPackages('-e ./pkg\nsix\n')).toBeNull();
  });
});
