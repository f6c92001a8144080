import { basename } from 'node:path';
import { Duration } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { DECODER_ENV, DECODER_PACKAGES } from '../core/preprocess/decoder-env.ts';
import { SHARD_INDEX_FILE } from '../core/shard-index.ts';
import {
  captionsKey,
  datasetPrefix,
  FINAL,
  modelLatestKey,
  planPartsPrefix,
  runPrefix,
  shardPlanKey,
  shardsPrefix,
  trainOptionsKey,
  validationKey,
} from '../core/s3-layout.ts';
import { INIT_SOURCES_ENV } from '../lambdas/validate/init-sources.ts';
import { BPE_VOCAB_ENV } from '../core/tokenizer/bpe.ts';
import type { DataBucket } from './data-bucket.ts';
import { HandlerFunction } from './node-function.ts';

export interface IngestFunctionsProps {
  data: DataBucket;
  /** The deployment's extra s3:// sources a train.json `init` may name (Validate refuses any other). */
  initSources: readonly string[];
  architecture: lambda.Architecture;
  logRetentionDays: logs.RetentionDays;
}

const BPE_VOCAB_FILE = 'core/assets/clip-bpe/bpe_simple_vocab_16e6.txt.gz';
const MODEL_CONFIGS_DIR = 'core/model-config/configs';

/** The Lambda steps of the workflow: Validate, Shard (one per plan item), Collect and Publish. */
export class IngestFunctions extends Construct {
  readonly validate: HandlerFunction;
  readonly shard: HandlerFunction;
  readonly collect: HandlerFunction;
  readonly publish: HandlerFunction;

  constructor(scope: Construct, id: string, props: IngestFunctionsProps) {
    super(scope, id);
    const common = { architecture: props.architecture, logRetentionDays: props.logRetentionDays };
    // The tokenizer reads its vocabulary from a file; bundles ship it at the task root.
    const tokenizer = {
      files: [BPE_VOCAB_FILE],
      environment: { [BPE_VOCAB_ENV]: `/var/task/${basename(BPE_VOCAB_FILE)}` },
    };
    this.validate = new HandlerFunction(this, 'Validate', {
      ...common,
      handler: 'validate',
      // Reads no image: the listing and two streaming passes over the CSV, CPU-bound in the parser, so one whole
      // vCPU (1769 MB). `rsclip bench-scale --rows 200000`: 9.2 s and 223 MB peak RSS, projected to 5M rows 213 s
      // and at most 1,690 MB (docs/DEPLOY.md, Scale).
      memorySize: 1769,
      timeout: Duration.minutes(15),
      // The image size comes from the model config; core/model-config/config.ts reads `configs/` beside its module.
      files: [MODEL_CONFIGS_DIR],
    });
    this.shard = new HandlerFunction(this, 'Shard', {
      ...common,
      handler: 'shard',
      memorySize: 2048,
      timeout: Duration.minutes(10),
      nativeModules: [...DECODER_PACKAGES],
      ...tokenizer,
      environment: { ...tokenizer.environment, ...DECODER_ENV },
    });
    this.collect = new HandlerFunction(this, 'Collect', {
      ...common,
      handler: 'collect',
      // One small summary per shard, 32 read at once: bench-scale --rows 200000 measured 1.1 s and 144 MB, projected
      // to 5M rows 24 s and under 1 GB; one whole vCPU for the JSON parsing and the margin.
      memorySize: 1769,
      timeout: Duration.minutes(15),
    });
    this.publish = new HandlerFunction(this, 'Publish', {
      ...common,
      handler: 'publish',
      memorySize: 512,
      timeout: Duration.minutes(5),
    });
    // Each key pattern is one of core/s3-layout.ts's, with `*` for the run id or dataset chosen at run time.
    const ANY = '*';
    const plan = `${planPartsPrefix(ANY)}/*`;
    const shards = `${shardsPrefix(ANY)}/*`;
    props.data.grantKeys(this.validate, {
      why: "Validate lists a dataset's folder, reads its captions.csv (at the version that started the run), train.json and, for init latest, the dataset's models/<dataset>/latest.json, and writes the run's report and shard plan",
      // models/<dataset>/latest.json: init `latest` is resolved here, to the model the run then trains from.
      list: [`${datasetPrefix(ANY)}/*`, modelLatestKey(ANY)],
      readVersions: [captionsKey(ANY)],
      read: [trainOptionsKey(ANY), plan, modelLatestKey(ANY)],
      write: [validationKey(ANY), shardPlanKey(ANY), plan],
      // The plan's spills are merged into one object and deleted.
      delete: [plan],
    });
    this.validate.addEnvironment(INIT_SOURCES_ENV, JSON.stringify(props.initSources));
    props.data.grantKeys(this.shard, {
      why: "a Shard item reads its plan rows and its dataset's images (a missing image is an unreadable one) and writes its shard and summary",
      list: [`${datasetPrefix(ANY)}/*`],
      read: [`${datasetPrefix(ANY)}/*`, plan],
      write: [shards],
    });
    props.data.grantKeys(this.collect, {
      why: "Collect reads the run's report and the Shard items' summaries (a missing one is a failed item) and writes the report and shards/index.json",
      list: [shards],
      read: [validationKey(ANY), shards],
      write: [validationKey(ANY), `${shardsPrefix(ANY)}/${SHARD_INDEX_FILE}`],
    });
    const final = `${runPrefix(ANY)}/${FINAL}/*`;
    props.data.grantKeys(this.publish, {
      why: "Publish checks a run's final/ files, reads the upload time of the captions.csv version the run read, and moves models/<dataset>/latest.json forward",
      list: [final, modelLatestKey(ANY)],
      read: [final, modelLatestKey(ANY)],
      readVersions: [captionsKey(ANY)],
      putDirect: [modelLatestKey(ANY)],
    });
  }
}
