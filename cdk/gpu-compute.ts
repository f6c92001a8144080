import { Duration, Size } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { INIT_CHECKPOINT_SUFFIXES } from '../core/dataset/validate.ts';
import { ATTEMPT_DEADLINE_EXIT_CODE, ATTEMPT_TIMEOUT_ENV } from '../core/run-spec.ts';
import { CHECKPOINTS, datasetPrefix, FINAL, FINAL_FILES, finalKey, MODELS, runPrefix, shardsPrefix } from '../core/s3-layout.ts';
import type { DataBucket } from './data-bucket.ts';
import { sourceBucketArn, sourceObjectArn, type InitSource } from './init-sources.ts';
import { REPO_ROOT } from './node-function.ts';

export interface GpuComputeProps {
  /** GPU instance types Batch may launch, e.g. g5.xlarge, g6.xlarge. */
  instanceTypes: ec2.InstanceType[];
  /** Spot (SPOT_PRICE_CAPACITY_OPTIMIZED; reclaims are retried and resume from the last checkpoint) or on-demand. */
  spot: boolean;
  maxvCpus: number;
  /**
   * With `spot`: the vCPU ceiling of an on-demand compute environment queued behind the spot one, so that a run
   * still trains when spot GPUs cannot be had (at on-demand prices); 0 or unset adds none.
   */
  onDemandMaxvCpus?: number;
  /** Per job; must fit the smallest instance type after the ECS agent's share. */
  vcpus?: number;
  /**
   * Host memory per job (default 14 GiB). Measured by bench-worker-memory (CPU worker, batch 8, where activations
   * are host memory too; docs/DEPLOY.md): ViT-B-32 3.7 GiB, RN50 3.0 GiB, ViT-L-14, RemoteCLIP's largest, 9.9 GiB.
   * 14 GiB keeps 4 GiB above that and fits a 16 GiB g5/g6.xlarge beside the ECS agent and the OS.
   */
  memory?: Size;
  /** Job attempts in total (default 5); spot reclaims and attempts that stopped before their timeout are retried. */
  attempts?: number;
  /** NAT gateways for the private subnets (image pulls, S3 goes through a gateway endpoint). */
  natGateways?: number;
}

export interface GpuWorkerProps extends GpuComputeProps {
  data: DataBucket;
  /**
   * Checkpoints outside the data bucket's built-in init sources that the worker may read: the deployment's
   * `initSources` and its `baseModelUri`.
   */
  extraSources: readonly InitSource[];
  logRetentionDays: logs.RetentionDays;
  /** Batch kills the job after this; the state machine's Train timeout is a little longer. */
  jobTimeout: Duration;
}

/**
 * A Batch job queue on managed EC2 GPU compute environments that scale to zero (spot, with an optional on-demand
 * one behind it), and the worker's job definition.
 */
export class GpuWorker extends Construct {
  /** Job attempts in total: spot reclaims and attempts that stopped at their deadline are retried. */
  readonly attempts: number;
  readonly vpc: ec2.Vpc;
  readonly queue: batch.JobQueue;
  readonly jobDefinition: batch.EcsJobDefinition;
  readonly jobRole: iam.Role;
  /** The extra sources that are prefixes (their grant ends in `*`), for cdk/nag.ts. */
  readonly extraSourcePrefixes: InitSource[] = [];

  constructor(scope: Construct, id: string, props: GpuWorkerProps) {
    super(scope, id);
    this.attempts = props.attempts ?? 5;
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: 3,
      natGateways: props.natGateways ?? 1,
      subnetConfiguration: [
        { name: 'public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24 },
        { name: 'workers', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
      ],
      gatewayEndpoints: { S3: { service: ec2.GatewayVpcEndpointAwsService.S3 } },
    });
    this.vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(
        new logs.LogGroup(this, 'FlowLogs', { retention: props.logRetentionDays }),
      ),
    });

    const environment = (id: string, spot: boolean, maxvCpus: number) =>
      new batch.ManagedEc2EcsComputeEnvironment(this, id, {
        vpc: this.vpc,
        vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
        instanceTypes: props.instanceTypes,
        useOptimalInstanceClasses: false,
        images: [{ imageType: batch.EcsMachineImageType.ECS_AL2023_NVIDIA }],
        minvCpus: 0,
        maxvCpus,
        spot,
        allocationStrategy: spot ? batch.AllocationStrategy.SPOT_PRICE_CAPACITY_OPTIMIZED : batch.AllocationStrategy.BEST_FIT_PROGRESSIVE,
        replaceComputeEnvironment: true,
      });
    const onDemandMaxvCpus = props.spot ? (props.onDemandMaxvCpus ?? 0) : 0;
    if (!Number.isInteger(onDemandMaxvCpus) || onDemandMaxvCpus < 0) {
      throw new Error(`GpuWorker: onDemandMaxvCpus must be a non-negative integer (got ${onDemandMaxvCpus})`);
    }
    // Batch places a job in the first environment (by order) that can take it: on-demand hosts start only when
    // the spot environment cannot place it.
    const computeEnvironments = [{ computeEnvironment: environment('ComputeEnvironment', props.spot, props.maxvCpus), order: 1 }];
    if (onDemandMaxvCpus > 0) {
      computeEnvironments.push({ computeEnvironment: environment('OnDemandComputeEnvironment', false, onDemandMaxvCpus), order: 2 });
    }
    this.queue = new batch.JobQueue(this, 'Queue', { computeEnvironments });

    this.jobRole = new iam.Role(this, 'JobRole', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') });
    // One role for every run's job: Batch takes the job role from the job definition (SubmitJob cannot override
    // it), and an ECS task's role session carries nothing of the job (no run id) that a policy could match. So
    // this role is scoped to the kinds of keys a run uses, under any run id: IAM keeps the worker off datasets'
    // images and captions, off validation.json, the plan and shards' inputs, off models/ for writing and off
    // every delete but checkpoints; which run's keys it touches is the worker's own choice (RUN_SPEC from Step
    // Functions), not enforced (docs/DEPLOY.md, IAM scoping).
    const ANY = '*';
    const shards = `${shardsPrefix(ANY)}/*`;
    const checkpoints = `${runPrefix(ANY)}/${CHECKPOINTS}/*`;
    const final = `${runPrefix(ANY)}/${FINAL}/*`;
    const models = `${MODELS}/*`;
    props.data.grantKeys(this.jobRole, {
      why: "the Batch worker reads a run's shards, resumes from and prunes the run's checkpoints, writes its final/ files, and reads the base checkpoint train.json's init may name (core/dataset/validate.ts initProblem: models/, a checkpoint file in the dataset's folder, or a run's published final/model.safetensors for init: latest)",
      list: [shards, checkpoints, models],
      // init: latest reads the model latest.json names (a run's final/model.safetensors), no other final/ file.
      read: [shards, checkpoints, models, finalKey(ANY, FINAL_FILES.model), ...INIT_CHECKPOINT_SUFFIXES.map((suffix) => `${datasetPrefix(ANY)}/*${suffix}`)],
      write: [checkpoints, final],
      delete: [checkpoints],
    });
    for (const source of props.extraSources) {
      const object = sourceObjectArn(source);
      this.jobRole.addToPolicy(new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [object] }));
      this.jobRole.addToPolicy(
        new iam.PolicyStatement({
          actions: ['s3:ListBucket'],
          resources: [sourceBucketArn(source)],
          conditions: { StringLike: { 's3:prefix': [`${source.key}${source.prefix ? '*' : ''}`] } },
        }),
      );
      if (source.prefix) this.extraSourcePrefixes.push(source);
    }

    this.jobDefinition = new batch.EcsJobDefinition(this, 'TrainJob', {
      container: new batch.EcsEc2ContainerDefinition(this, 'Worker', {
        // Build context is the repository root (the worker imports core/); /.dockerignore trims it.
        image: ecs.ContainerImage.fromAsset(REPO_ROOT, {
          file: 'worker/Dockerfile',
          // g4dn/g5/g6 hosts are x86-64 and onnxruntime's CUDA provider ships for x64 only.
          platform: Platform.LINUX_AMD64,
          exclude: ['node_modules', 'cdk.out', '.git', 'out', '.tmp'],
        }),
        cpu: props.vcpus ?? 4,
        memory: props.memory ?? Size.gibibytes(14),
        gpu: 1,
        jobRole: this.jobRole,
        environment: { [ATTEMPT_TIMEOUT_ENV]: String(props.jobTimeout.toSeconds()) },
        logging: ecs.LogDrivers.awsLogs({
          streamPrefix: 'train',
          logGroup: new logs.LogGroup(this, 'JobLogs', { retention: props.logRetentionDays }),
        }),
      }),
      timeout: props.jobTimeout,
      retryAttempts: this.attempts,
      // The worker resumes from runs/<runId>/checkpoints/latest.json, so a reclaimed spot host costs little;
      // any other failure is a real one and ends the job.
      retryStrategies: [
        batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.SPOT_INSTANCE_RECLAIMED),
        // The worker checkpoints and exits with this code before the attempt timeout, which Batch does not retry.
        batch.RetryStrategy.of(batch.Action.RETRY, batch.Reason.custom({ onExitCode: String(ATTEMPT_DEADLINE_EXIT_CODE) })),
        batch.RetryStrategy.of(batch.Action.EXIT, batch.Reason.custom({ onReason: '*' })),
      ],
    });
  }
}
