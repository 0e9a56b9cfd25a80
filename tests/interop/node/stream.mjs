// Usage: node stream.mjs ADDRESS JURISDICTION CERT_PATH REQUEST_JSON
// Token from env GATEWAY_TOKEN. Streams a bulk transfer (RecordExchange.StreamRecords)
// and prints a JSON summary: the started message, rows per chunk, the last cursor and
// the completed message (or the error).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const here = path.dirname(fileURLToPath(import.meta.url));
const protos = path.resolve(here, '../../../protos');
const [address, jurisdiction, certPath, requestJson] = process.argv.slice(2);

const def = protoLoader.loadSync('dataexchange/gateway/v1/service.proto', {
  includeDirs: [protos], keepCase: true, longs: String, defaults: true, oneofs: true,
});
const pkg = grpc.loadPackageDefinition(def);
const creds = grpc.credentials.combineChannelCredentials(
  grpc.credentials.createSsl(fs.readFileSync(certPath)),
  grpc.credentials.createFromMetadataGenerator((_params, cb) => {
    const md = new grpc.Metadata();
    md.add('authorization', `Bearer ${process.env.GATEWAY_TOKEN}`);
    cb(null, md);
  }),
);
const client = new pkg.dataexchange.gateway.v1.RecordExchange(address, creds, {
  'grpc.ssl_target_name_override': `gw-${jurisdiction}`,
});
const out = { started: null, chunks: [], cursor: '', completed: null, first: null };
const call = client.StreamRecords(JSON.parse(requestJson), { deadline: Date.now() + 30000 });
call.on('data', (m) => {
  if (m.kind === 'started') out.started = m.started;
  if (m.kind === 'chunk') {
    out.chunks.push(m.chunk.records.length);
    out.cursor = m.chunk.cursor;
    if (out.first === null) out.first = m.chunk.records[0];
  }
  if (m.kind === 'completed') out.completed = m.completed;
});
call.on('error', () => {}); // reported with the final status below
call.on('status', (status) => {
  // The last event of every call: OK after the stream ended, or the error.
  if (status.code !== grpc.status.OK) {
    console.log(JSON.stringify({ error: { code: status.code, details: status.details } }));
  } else {
    console.log(JSON.stringify(out));
  }
  client.close();
});
