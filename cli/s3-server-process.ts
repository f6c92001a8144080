import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Crc64Nvme } from '@aws-sdk/checksums/crc';
import { startFauxqs } from 'fauxqs';

/**
 * The loopback S3 server as a process of its own (startLocalS3 with `separateProcess`), so that a benchmark's
 * CPU time counts the client side only, as it would against real S3. It sends its port once up, answers any
 * message with its CPU usage so far, and stops when the parent disconnects.
 *
 * Two things real S3 does that fauxqs does not, each through a proxy in front of it: RSCLIP_S3_LATENCY_MS holds
 * every request that long (the round trip), and RSCLIP_S3_CHECKSUMS=1 answers whole-object GETs that ask for
 * checksums (the SDK does by default) with the CRC64NVME that S3 keeps for every new object, which the SDK then
 * verifies.
 */
const server = await startFauxqs({ host: '127.0.0.1', port: 0, logger: false });
const latency = Number(process.env.RSCLIP_S3_LATENCY_MS ?? 0);
const checksums = process.env.RSCLIP_S3_CHECKSUMS === '1';

async function crc64(body: Buffer): Promise<string> {
  const h = new Crc64Nvme();
  h.update(body);
  return Buffer.from(await h.digest()).toString('base64');
}

function forward(req: http.IncomingMessage, res: http.ServerResponse, agent: http.Agent): void {
  const withChecksum = checksums && req.method === 'GET' && req.headers['x-amz-checksum-mode']?.toString().toUpperCase() === 'ENABLED';
  const up = http.request({ host: '127.0.0.1', port: server.port, method: req.method, path: req.url, headers: req.headers, agent }, (r) => {
    if (!withChecksum || r.statusCode !== 200) {
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
      return;
    }
    const chunks: Buffer[] = [];
    r.on('data', (c: Buffer) => chunks.push(c));
    r.on('end', () => {
      const body = Buffer.concat(chunks);
      void crc64(body).then((sum) => {
        res.writeHead(200, { ...r.headers, 'x-amz-checksum-crc64nvme': sum, 'x-amz-checksum-type': 'FULL_OBJECT' });
        res.end(body);
      });
    });
  });
  up.on('error', (e) => res.destroy(e));
  req.pipe(up);
}

let front: http.Server | undefined;
if (latency > 0 || checksums) {
  const agent = new http.Agent({ keepAlive: true });
  front = http.createServer((req, res) => setTimeout(() => forward(req, res, agent), latency));
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
}
process.on('message', () => process.send!(process.cpuUsage()));
process.on('disconnect', () => {
  front?.close();
  void server.stop().finally(() => process.exit(0));
});
process.send!({ port: front ? (front.address() as AddressInfo).port : server.port });
