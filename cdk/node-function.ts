import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export interface HandlerFunctionProps {
  /** Folder under lambdas/ holding handler.ts. */
  handler: string;
  architecture: lambda.Architecture;
  logRetentionDays: logs.RetentionDays;
  memorySize?: number;
  timeout?: Duration;
  environment?: Record<string, string>;
  /** Packages with native binaries (sharp): installed for the Lambda's platform instead of bundled. */
  nativeModules?: string[];
  /** Repository files or folders the code reads at run time, copied beside the bundle (/var/task/<basename>). */
  files?: string[];
  metricsNamespace?: string;
}

/** Every handler is bundled the same way: local esbuild (no Docker at synth), ESM, the SDK bundled in. */
export class HandlerFunction extends nodejs.NodejsFunction {
  constructor(scope: Construct, id: string, props: HandlerFunctionProps) {
    const native = props.nativeModules ?? [];
    super(scope, id, {
      entry: join(REPO_ROOT, 'lambdas', props.handler, 'handler.ts'),
      handler: 'handler',
      runtime: lambda.Runtime.NODEJS_24_X,
      architecture: props.architecture,
      memorySize: props.memorySize ?? 512,
      timeout: props.timeout ?? Duration.minutes(1),
      tracing: lambda.Tracing.ACTIVE,
      logGroup: new logs.LogGroup(scope, `${id}Logs`, { retention: props.logRetentionDays }),
      projectRoot: REPO_ROOT,
      depsLockFilePath: join(REPO_ROOT, 'package-lock.json'),
      environment: {
        POWERTOOLS_SERVICE_NAME: `rsclip-${props.handler}`,
        POWERTOOLS_METRICS_NAMESPACE: props.metricsNamespace ?? 'rsclip',
        NODE_OPTIONS: '--enable-source-maps',
        ...props.environment,
      },
      bundling: {
        format: nodejs.OutputFormat.ESM,
        target: 'node22',
        sourceMap: true,
        // The runtime's SDK version drifts; bundling ours keeps what was tested.
        externalModules: [],
        nodeModules: native,
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          afterBundling: (inputDir: string, outputDir: string) =>
            (props.files ?? []).map((f) => `cp -R "${join(inputDir, f)}" "${outputDir}/"`),
        },
        // ESM bundles of CommonJS dependencies still call require().
        banner: "import { createRequire as __rsclipRequire } from 'node:module'; const require = __rsclipRequire(import.meta.url);",
        ...(native.length
          ? {
              environment: {
                npm_config_os: 'linux',
                npm_config_cpu: props.architecture === lambda.Architecture.ARM_64 ? 'arm64' : 'x64',
                npm_config_libc: 'glibc',
              },
            }
          : {}),
      },
    });
  }
}
