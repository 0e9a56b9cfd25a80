// Usage: node subject.mjs ADDRESS JURISDICTION CERT_PATH SUBJECT_ID
// Token from env GATEWAY_TOKEN. Prints the GetAccessHistory response (or the error) as JSON.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const here = path.dirname(fileURLToPath(import.meta.url));
const protos = path.resolve(here, '../../../protos');
const [address, jurisdiction, certPath, subjectId] = process.argv.slice(2);

const def = protoLoader.loadSync('dataexchange/gateway/v1/subject.proto', {
  includeDirs: [protos], keepCase: true, longs: String, enums: String, defaults: true,
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
const client = new pkg.dataexchange.gateway.v1.SubjectAccess(address, creds, {
  'grpc.ssl_target_name_override': `gw-${jurisdiction}`,
});
client.GetAccessHistory({ subject_id: subjectId }, { deadline: Date.now() + 30000 }, (err, resp) => {
  if (err) {
    console.log(JSON.stringify({ error: { code: err.code, details: err.details } }));
  } else {
    console.log(JSON.stringify(resp));
  }
  client.close();
});
