/**
 * LocalStack smoke test (run through scripts/localstack-smoke.sh, which sets the endpoint, bucket and state
 * machine): uploads a tiny generated dataset the way a user would (captions.csv last), waits for the execution
 * the upload starts and for models/<dataset>/latest.json, and prints the execution history when it fails.
 * Usage: localstack-smoke.sh [--timeout SECONDS]
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  ListExecutionsCommand,
  SFNClient,
  type ExecutionListItem,
} from '@aws-sdk/client-sfn';
import { generateDemoDataset } from '../cli/demo-data/generate.ts';
import { listFolder } from '../cli/local-s3.ts';
import { makeS3Client } from '../core/s3-client.ts';
import { CAPTIONS_FILE, datasetPrefix, modelLatestKey, TRAIN_OPTIONS_FILE } from '../core/s3-layout.ts';
import { S3Store } from '../core/store.ts';
import type { TrainOptions } from '../core/train-options.ts';

const bucket = process.env.RSCLIP_BUCKET;
const stateMachineArn = process.env.RSCLIP_STATE_MACHINE;
if (!bucket || !stateMachineArn) throw new Error('set RSCLIP_BUCKET and RSCLIP_STATE_MACHINE (scripts/localstack-smoke.sh does)');
const timeoutFlag = process.argv.indexOf('--timeout');
const timeoutMs = 1000 * (timeoutFlag >= 0 ? Number(process.argv[timeoutFlag + 1]) : 900);

const OPTIONS: TrainOptions = { model: 'ViT-tiny', init: 'random:ViT-tiny', maxSteps: 4, batchSize: 8, seed: 1 };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function upload(dataset: string): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'rsclip-smoke-'));
  try {
    await generateDemoDataset(dir, { perClass: 2, valPerClass: 1, testPerClass: 0, size: 32 });
    const s3 = makeS3Client();
    const put = async (key: string, body: Uint8Array | string): Promise<void> => {
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${datasetPrefix(dataset)}/${key}`, Body: body }));
    };
    const files = (await listFolder(dir)).filter((k) => k !== CAPTIONS_FILE);
    for (const key of files) await put(key, await readFile(join(dir, ...key.split('/'))));
    await put(TRAIN_OPTIONS_FILE, JSON.stringify(OPTIONS));
    await put(CAPTIONS_FILE, await readFile(join(dir, CAPTIONS_FILE)));
    console.log(`uploaded ${files.length + 2} objects to s3://${bucket}/${datasetPrefix(dataset)}/`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function waitForExecution(sfn: SFNClient, dataset: string, deadline: number): Promise<ExecutionListItem> {
  while (Date.now() < deadline) {
    const { executions = [] } = await sfn.send(new ListExecutionsCommand({ stateMachineArn }));
    const mine = executions.find((e) => e.name?.startsWith(`${dataset}-`));
    if (mine) return mine;
    await sleep(2000);
  }
  throw new Error(`no execution started for ${dataset}: is the EventBridge rule deployed and S3 emitting events?`);
}

async function main(): Promise<number> {
  const dataset = `smoke-${Date.now()}`;
  const deadline = Date.now() + timeoutMs;
  const sfn = new SFNClient({});
  await upload(dataset);
  const execution = await waitForExecution(sfn, dataset, deadline);
  console.log(`execution ${execution.name} started; waiting (the Train step needs npm run localstack:worker)`);
  let status = 'RUNNING';
  while (status === 'RUNNING' && Date.now() < deadline) {
    await sleep(3000);
    status = (await sfn.send(new DescribeExecutionCommand({ executionArn: execution.executionArn }))).status ?? 'UNKNOWN';
  }
  if (status !== 'SUCCEEDED') {
    console.error(`execution ${execution.name}: ${status}`);
    const { events = [] } = await sfn.send(new GetExecutionHistoryCommand({ executionArn: execution.executionArn, reverseOrder: true, maxResults: 15 }));
    for (const e of events.reverse()) console.error(JSON.stringify(e));
    return 1;
  }
  const latest = await new S3Store(bucket!, '').tryGet(modelLatestKey(dataset));
  if (!latest) {
    console.error(`execution succeeded but s3://${bucket}/${modelLatestKey(dataset)} is missing`);
    return 1;
  }
  const published = JSON.parse(new TextDecoder().decode(latest)) as { runId: string; model: string; metrics: { after: { mean_recall: number } } };
  if (published.runId !== execution.name) {
    console.error(`latest.json names run ${published.runId}, not ${execution.name}`);
    return 1;
  }
  console.log(`published ${published.model} (mean recall ${published.metrics.after.mean_recall.toFixed(1)} %)`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 1;
  },
);
