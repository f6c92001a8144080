import { basename } from 'node:path';
import { Duration } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { DECODER_ENV, DECODER_PACKAGES } from '../core/preprocess/decoder-env.ts';
import { captionsKey } from '../core/s3-layout.ts';
import { BPE_VOCAB_ENV } from '../core/tokenizer/bpe.ts';
import type { DataBucket } from './data-bucket.ts';
import { HandlerFunction } from './node-function.ts';

export interface IngestFunctionsProps {
  data: DataBucket;
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
    props.data.grantPrefixes(this.validate, { read: ['datasets'], write: ['runs'] });
    props.data.grantPrefixes(this.shard, { read: ['datasets', 'runs'], write: ['runs'] });
    props.data.grantPrefixes(this.collect, { read: ['runs'], write: ['runs'] });
    props.data.grantPrefixes(this.publish, { read: ['runs', 'models'], write: ['models'] });
    // Publish orders runs by the upload time of the captions.csv version each read (lambdas/publish/publish.ts).
    props.data.bucket.grantRead(this.publish, captionsKey('*'));
  }
}
