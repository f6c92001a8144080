import { Duration, Size } from 'aws-cdk-lib';
import * as batch from 'aws-cdk-lib/aws-batch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { ATTEMPT_DEADLINE_EXIT_CODE, ATTEMPT_TIMEOUT_ENV } from '../core/run-spec.ts';
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
  logRetentionDays: logs.RetentionDays;
  /** Batch kills the job after this; the state machine's Train timeout is a little longer. */
  jobTimeout: Duration;
}

/**
 * A Batch job queue on managed EC2 GPU compute environments that scale to zero (spot, with an optional on-demand
 * one behind it), and the worker's job definition, which each run copies with a role of its own (cdk/run-access.ts).
 */
export class GpuWorker extends Construct {
  /** Job attempts in total: spot reclaims and attempts that stopped at their deadline are retried. */
  readonly attempts: number;
  readonly vpc: ec2.Vpc;
  readonly queue: batch.JobQueue;
  /** The worker's job definition without a job role: the template of every run's own (cdk/run-access.ts). */
  readonly jobDefinition: batch.EcsJobDefinition;

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
