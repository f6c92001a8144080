import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startFauxqs } from 'fauxqs';

/**
 * The loopback S3 server as a process of its own (startLocalS3 with `separateProcess`), so that a benchmark's
 * CPU time counts the client side only, as it would against real S3. It sends its port once up, answers any
 * message with its CPU usage so far, and stops when the parent disconnects. With RSCLIP_S3_LATENCY_MS it answers
 * through a proxy that holds every request that long first, as the round trip to real S3 would.
 */
const server = await startFauxqs({ host: '127.0.0.1', port: 0, logger: false });
const latency = Number(process.env.RSCLIP_S3_LATENCY_MS ?? 0);
let front: http.Server | undefined;
if (latency > 0) {
  const agent = new http.Agent({ keepAlive: true });
  front = http.createServer((req, res) => {
    setTimeout(() => {
      const up = http.request({ host: '127.0.0.1', port: server.port, method: req.method, path: req.url, headers: req.headers, agent }, (r) => {
        res.writeHead(r.statusCode!, r.headers);
        r.pipe(res);
      });
      up.on('error', (e) => res.destroy(e));
      req.pipe(up);
    }, latency);
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
}
process.on('message', () => process.send!(process.cpuUsage()));
process.on('disconnect', () => {
  front?.close();
  void server.stop().finally(() => process.exit(0));
});
process.send!({ port: front ? (front.address() as AddressInfo).port : server.port });
