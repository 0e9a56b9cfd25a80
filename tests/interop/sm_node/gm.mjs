// Reads one JSON array of operations on stdin, answers one JSON array on stdout.
// Hex in, hex out. Only sm-crypto does cryptography here.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { sm2, sm3 } = require("sm-crypto");

const hexToArray = (h) => Array.from(Buffer.from(h, "hex"));

function run(op) {
  switch (op.op) {
    case "verify": // SM3 with Z (default user id 1234567812345678), DER signature
      return {
        ok: sm2.doVerifySignature(hexToArray(op.msg), op.sig, op.pub, { der: true, hash: true }),
      };
    case "keypair": {
      const k = sm2.generateKeyPairHex();
      return { priv: k.privateKey, pub: k.publicKey };
    }
    case "sign":
      return {
        sig: sm2.doSignature(hexToArray(op.msg), op.priv, { der: true, hash: true, publicKey: op.pub }),
      };
    case "encrypt": // C1C3C2, C1 without the 04 prefix
      return { c: sm2.doEncrypt(hexToArray(op.msg), op.pub, 1) };
    case "decrypt":
      return { m: Buffer.from(sm2.doDecrypt(op.c, op.priv, 1, { output: "array" })).toString("hex") };
    case "hmac":
      return { mac: sm3(hexToArray(op.msg), { key: op.key }) };
    case "sm3":
      return { digest: sm3(hexToArray(op.msg)) };
    default:
      throw new Error(`unknown op ${op.op}`);
  }
}

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const ops = JSON.parse(input);
  process.stdout.write(JSON.stringify(ops.map(run)) + "\n");
});
