// roundtrip.js produces N records with kafkajs (idempotent, acks=all) and
// consumes them with a kafkajs consumer group, then prints one JSON summary
// on stdout. compat/kafkajs_test.go runs it against a real herald serve and
// checks the summary.
//
//   node compat/js/roundtrip.js BROKER TOPIC GROUP N [MECHANISM USER PASSWORD CA_FILE]
//
// With the last four, it connects over TLS trusting CA_FILE and
// authenticates with SASL (plain, scram-sha-256 or scram-sha-512).
//
// The records mirror makeRecords("kafkajs", N) in compat/records_test.go:
// key kafkajs-kNNNNN, value kafkajs-vNNNNN-x…x (i%37 x's), headers
// client=kafkajs and seq=i. Logs go to stderr; the exit code is 0 only if
// every record was acknowledged and N distinct records were consumed.
'use strict';

const { Kafka, logLevel, Partitioners } = require('kafkajs');

const [broker, topic, group, nArg, mechanism, username, password, caFile] = process.argv.slice(2);
const n = Number(nArg);
if (!broker || !topic || !group || !Number.isInteger(n) || n <= 0) {
  console.error('usage: node roundtrip.js BROKER TOPIC GROUP N');
  process.exit(2);
}

const pad = (i) => String(i).padStart(5, '0');
const records = Array.from({ length: n }, (_, i) => ({
  key: `kafkajs-k${pad(i)}`,
  value: `kafkajs-v${pad(i)}-${'x'.repeat(i % 37)}`,
  headers: { client: 'kafkajs', seq: String(i) },
}));

const kafka = new Kafka({
  clientId: 'herald-compat-kafkajs',
  brokers: [broker],
  logLevel: logLevel.WARN,
  logCreator: () => ({ namespace, level, log }) => {
    console.error(`kafkajs ${namespace} level=${level}: ${log.message}`, JSON.stringify(log));
  },
  retry: { initialRetryTime: 100, retries: 8 },
  ...(mechanism ? {
    ssl: { ca: [require('fs').readFileSync(caFile, 'utf8')] },
    sasl: { mechanism, username, password },
  } : {}),
});

const summary = { produced: 0, producedOffsets: {}, consumed: [], duplicates: 0, error: null };

async function main() {
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 1,
    createPartitioner: Partitioners.DefaultPartitioner,
  });
  await producer.connect();
  for (let i = 0; i < n; i += 100) {
    const batch = records.slice(i, i + 100);
    const acks = await producer.send({ topic, acks: -1, messages: batch });
    for (const a of acks) {
      summary.producedOffsets[a.partition] = a.baseOffset;
    }
    summary.produced += batch.length;
  }
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: group, sessionTimeout: 6000, heartbeatInterval: 500, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Set();
  let resolveAll;
  const all = new Promise((resolve) => { resolveAll = resolve; });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      const key = message.key.toString();
      const headers = {};
      for (const [k, v] of Object.entries(message.headers || {})) {
        headers[k] = v.toString();
      }
      summary.consumed.push({ partition, offset: message.offset, key, value: message.value.toString(), headers });
      if (seen.has(key)) {
        summary.duplicates++;
      }
      seen.add(key);
      if (seen.size >= n) {
        resolveAll();
      }
    },
  });
  await all;
  // Linger so that records beyond the n expected would show up.
  await new Promise((resolve) => setTimeout(resolve, 300));
  // disconnect commits the offsets of everything eachMessage returned from.
  await consumer.disconnect();
}

const timer = setTimeout(() => {
  summary.error = 'timed out after 60s';
  console.log(JSON.stringify(summary));
  process.exit(1);
}, 60_000);

main().then(
  () => {
    clearTimeout(timer);
    console.log(JSON.stringify(summary));
    process.exit(0);
  },
  (err) => {
    clearTimeout(timer);
    summary.error = String(err && err.stack ? err.stack : err);
    console.log(JSON.stringify(summary));
    process.exit(1);
  },
);
