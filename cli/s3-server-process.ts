import { startFauxqs } from 'fauxqs';

/**
 * The loopback S3 server as a process of its own (startLocalS3 with `separateProcess`), so that a benchmark's
 * CPU time counts the client side only, as it would against real S3. It sends its port once up, answers any
 * message with its CPU usage so far, and stops when the parent disconnects.
 */
const server = await startFauxqs({ host: '127.0.0.1', port: 0, logger: false });
process.on('message', () => process.send!(process.cpuUsage()));
process.on('disconnect', () => void server.stop().finally(() => process.exit(0)));
process.send!({ port: server.port });
