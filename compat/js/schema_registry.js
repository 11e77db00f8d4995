// schema_registry.js registers an Avro schema with
// @kafkajs/confluent-schema-registry against Herald's registry, encodes N
// records with it, produces them with kafkajs to a topic whose values
// Herald validates, consumes them back and decodes them, then prints one
// JSON summary on stdout. compat/schema_registry_test.go runs it against a
// real herald serve and checks the summary.
//
//   node compat/js/schema_registry.js REGISTRY_URL BROKER TOPIC N
//
// Also checked: a second, backward-compatible version registers under the
// same subject; an incompatible one is refused (409); lookups by subject
// and version answer the ids; a record that is not in the wire format is
// refused by the broker. Logs go to stderr.
'use strict';

const { Kafka, logLevel, Partitioners } = require('kafkajs');
const { SchemaRegistry, SchemaType } = require('@kafkajs/confluent-schema-registry');

const [registryURL, broker, topic, nArg] = process.argv.slice(2);
const n = Number(nArg);
if (!registryURL || !broker || !topic || !Number.isInteger(n) || n <= 0) {
  console.error('usage: node schema_registry.js REGISTRY_URL BROKER TOPIC N');
  process.exit(2);
}

const v1 = {
  type: 'record', name: 'Payment', namespace: 'com.example.shop',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'cents', type: 'long' },
    { name: 'currency', type: { type: 'enum', name: 'Currency', symbols: ['EUR', 'USD'] } },
  ],
};
const v2 = { ...v1, fields: [...v1.fields, { name: 'note', type: ['null', 'string'], default: null }] };
const bad = { ...v1, fields: [...v1.fields, { name: 'required_now', type: 'int' }] };

const summary = {
  id: 0, idV2: 0, latestId: 0, incompatibleStatus: 0, incompatibleMessage: '',
  produced: 0, consumed: [], plainRefused: false, plainError: '', error: null,
};

async function main() {
  const registry = new SchemaRegistry({ host: registryURL });
  const subject = `${topic}-value`;
  const { id } = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(v1) }, { subject });
  summary.id = id;
  const again = await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(v1) }, { subject });
  if (again.id !== id) throw new Error(`re-registering gave id ${again.id}, want ${id}`);
  summary.idV2 = (await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(v2) }, { subject })).id;
  summary.latestId = await registry.getLatestSchemaId(subject);
  if ((await registry.getRegistryId(subject, 1)) !== id) throw new Error('getRegistryId(subject, 1) disagrees');
  try {
    await registry.register({ type: SchemaType.AVRO, schema: JSON.stringify(bad) }, { subject });
  } catch (e) {
    summary.incompatibleStatus = e.status || (e.originalError && e.originalError.status) || -1;
    summary.incompatibleMessage = e.message;
  }

  const kafka = new Kafka({
    clientId: 'herald-compat-sr', brokers: [broker], logLevel: logLevel.NOTHING,
    retry: { initialRetryTime: 100, retries: 3 },
  });
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const messages = [];
  for (let i = 0; i < n; i++) {
    const value = await registry.encode(id, { id: `p-${i}`, cents: 100 + i, currency: i % 2 ? 'USD' : 'EUR' });
    messages.push({ key: `k-${i}`, value });
  }
  await producer.send({ topic, messages, acks: -1 });
  summary.produced = n;
  try {
    await producer.send({ topic, messages: [{ key: 'plain', value: 'not avro' }], acks: -1 });
  } catch (e) {
    summary.plainRefused = true;
    summary.plainError = `${e.type || e.name}: ${e.message}`;
  }
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `${topic}-readers` });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`consumed ${summary.consumed.length} of ${n} in 60s`)), 60000);
    consumer.run({
      eachMessage: async ({ message }) => {
        const decoded = await registry.decode(message.value);
        summary.consumed.push({ key: message.key.toString(), value: decoded });
        if (summary.consumed.length >= n) {
          clearTimeout(timer);
          resolve();
        }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
}

main()
  .catch((e) => { summary.error = String(e && e.stack || e); })
  .finally(() => {
    process.stdout.write(JSON.stringify(summary) + '\n');
    process.exit(summary.error ? 1 : 0);
  });
