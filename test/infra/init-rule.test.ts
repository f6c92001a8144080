import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalS3, type LocalS3 } from '../../cli/local-s3.ts';
import { ANY_INIT_SOURCE, initProblem, type InitRule } from '../../core/dataset/validate.ts';
import { captionsKey, imageKey, modelLatestKey, trainOptionsKey, validationKey } from '../../core/s3-layout.ts';
import { INIT_SOURCES_ENV, initRuleFromEnv } from '../../lambdas/validate/init-sources.ts';
import { handler } from '../../lambdas/validate/handler.ts';

const rule: InitRule = { bucket: 'data', sources: ['s3://shared/base/', 's3://other/one.pt'] };

describe("train.json init: what a dataset's run may start from", () => {
  it.each([
    'random:ViT-tiny',
    'latest',
    's3://data/models/base/RemoteCLIP-ViT-B-32.pt',
    's3://data/models/tiles/latest.json',
    's3://data/datasets/tiles/RemoteCLIP-ViT-B-32.pt',
    's3://data/datasets/tiles/ckpt/epoch_3.safetensors',
    's3://shared/base/a/b.pt',
    's3://other/one.pt',
  ])('allows %s', (init) => {
    expect(initProblem(init, 'tiles', rule)).toBeUndefined();
  });

  it.each([
    ['s3://data/datasets/other/model.pt', 'is outside what the dataset may read'],
    ['s3://data/datasets/tiles/captions.csv', 'is outside what the dataset may read'],
    ['s3://data/datasets/tiles-2/model.pt', 'is outside what the dataset may read'],
    ['s3://data/runs/other-run/final/model.safetensors', 'is outside what the dataset may read'],
    ['s3://data/datasets/tiles/../other/model.pt', "has an empty, '.' or '..' path segment"],
    ['s3://data/models//x.pt', "has an empty, '.' or '..' path segment"],
    ['s3://other/two.pt', 'is outside what the dataset may read'],
    ['s3://shared/basement/x.pt', 'is outside what the dataset may read'],
    ['s3://elsewhere/models/x.pt', 'is outside what the dataset may read'],
    ['/etc/passwd', 'is not an s3:// URI'],
    ['./model.pt', 'is not an s3:// URI'],
  ])('refuses %s in one line that names what is allowed', (init, why) => {
    const reason = initProblem(init, 'tiles', rule)!;
    expect(reason).toContain(`init '${init}' ${why}`);
    expect(reason).toContain("a run of dataset 'tiles' may start from random:<config>, latest, a .pt/.pth/.bin/.safetensors file under s3://data/datasets/tiles/, anything under s3://data/models/, s3://shared/base/, s3://other/one.pt");
    expect(reason).not.toContain('\n');
  });

  it('allows anything under the local runner\'s "*"', () => {
    expect(initProblem('/home/me/model.pt', 'tiles', { bucket: 'data', sources: [ANY_INIT_SOURCE] })).toBeUndefined();
  });

  it('reads the sources from the environment the stack sets, strictly', () => {
    expect(initRuleFromEnv('b', {})).toEqual({ bucket: 'b', sources: [] });
    expect(initRuleFromEnv('b', { [INIT_SOURCES_ENV]: '["s3://x/y/"]' })).toEqual({ bucket: 'b', sources: ['s3://x/y/'] });
    expect(() => initRuleFromEnv('b', { [INIT_SOURCES_ENV]: 's3://x/y/' })).toThrow(/not JSON/);
    expect(() => initRuleFromEnv('b', { [INIT_SOURCES_ENV]: '{"a":1}' })).toThrow(/JSON array/);
  });
});

describe('Validate handler', () => {
  let s3: LocalS3;
  const saved = process.env[INIT_SOURCES_ENV];
  beforeAll(async () => {
    process.env.POWERTOOLS_METRICS_DISABLED = 'true';
    process.env.POWERTOOLS_LOG_LEVEL = 'SILENT';
    delete process.env[INIT_SOURCES_ENV];
    s3 = await startLocalS3('init-rule-test');
  });
  afterAll(async () => {
    if (saved === undefined) delete process.env[INIT_SOURCES_ENV];
    else process.env[INIT_SOURCES_ENV] = saved;
    await s3?.stop();
  });

  async function dataset(name: string, init: string): Promise<void> {
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
    for (let i = 0; i < 4; i++) await s3.store.put(imageKey(name, `img${i}.png`), png);
    await s3.store.put(trainOptionsKey(name), JSON.stringify({ init }));
    await s3.store.put(captionsKey(name), `filename,caption,split\n${[0, 1, 2, 3].map((i) => `img${i}.png,tile ${i},train`).join('\n')}\n`);
  }

  it("fails a run whose init names another dataset's data, with the reason in validation.json", async () => {
    const init = `s3://${s3.bucket}/datasets/victim/captions.csv`;
    await dataset('thief', init);
    await expect(handler({ bucket: s3.bucket, key: captionsKey('thief'), runId: 'thief-1' })).rejects.toMatchObject({
      name: 'DatasetInvalid',
      message: expect.stringContaining(`train.json init: init '${init}' is outside what the dataset may read`),
    });
    const report = JSON.parse(new TextDecoder().decode(await s3.store.get(validationKey('thief-1'))));
    expect(report.valid).toBe(false);
    expect(report.problems).toEqual([
      {
        file: 'train.json',
        field: 'init',
        reason: expect.stringMatching(new RegExp(`^init '${init.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}' is outside what the dataset may read; a run of dataset 'thief' may start from random:<config>, latest, .*anything under s3://${s3.bucket}/models/$`)),
      },
    ]);
  });

  it('resolves init latest to the model latest.json names and its config, and fails a dataset with none published yet', async () => {
    await dataset('first', 'latest');
    await expect(handler({ bucket: s3.bucket, key: captionsKey('first'), runId: 'first-1' })).rejects.toMatchObject({
      name: 'DatasetInvalid',
      message: expect.stringContaining(`train.json init: init "latest": s3://${s3.bucket}/models/first/latest.json does not exist (no model published for first yet)`),
    });
    await s3.store.put(modelLatestKey('first'), JSON.stringify({ model: 'runs/first-0/final/model.safetensors', metrics: { model: 'ViT-tiny' } }));
    const out = await handler({ bucket: s3.bucket, key: captionsKey('first'), runId: 'first-2' });
    expect(out.options).toMatchObject({ init: `s3://${s3.bucket}/runs/first-0/final/model.safetensors`, model: 'ViT-tiny' });
    // The shards are planned at that model's size (ViT-tiny: 32 px), not the default ViT-B-32's 224.
    expect(out.imageSize).toBe(32);
  });

  it('passes a run whose init is a checkpoint in its own folder', async () => {
    await dataset('own', `s3://${s3.bucket}/datasets/own/RemoteCLIP-ViT-B-32.pt`);
    const out = await handler({ bucket: s3.bucket, key: captionsKey('own'), runId: 'own-1' });
    expect(out.options.init).toBe(`s3://${s3.bucket}/datasets/own/RemoteCLIP-ViT-B-32.pt`);
  });
});
