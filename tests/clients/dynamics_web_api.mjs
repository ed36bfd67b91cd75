// npm dynamics-web-api 2.5.0 against `weft up --tls`, through its public API only: WhoAmI, table metadata,
// create, retrieve, update, references ($ref), single properties, query with paging and count, ETags,
// upsert, $batch, delete.
//
// Run by tests/all/clients.rs as `node dynamics_web_api.mjs https://127.0.0.1:PORT NODE_MODULES_DIR`, with
// NODE_EXTRA_CA_CERTS set to weft's development CA. weft on loopback needs no sign-in: the library's
// public onTokenRefresh callback returns a fixed token.
import { createRequire } from "node:module";
import path from "node:path";

const [base, modules] = process.argv.slice(2);
const require = createRequire(path.join(modules, "index.js"));
const { DynamicsWebApi } = require("dynamics-web-api");

function check(cond, what) {
  if (!cond) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
}

const api = new DynamicsWebApi({
  serverUrl: base,
  dataApi: { version: "9.2" },
  onTokenRefresh: async () => "weft-loopback",
});

const me = await api.callFunction("WhoAmI");
check(/^[0-9a-f-]{36}$/.test(me.UserId), `WhoAmI: ${JSON.stringify(me)}`);
check(/^[0-9a-f-]{36}$/.test(me.BusinessUnitId), `WhoAmI BusinessUnitId: ${JSON.stringify(me)}`);

const entity = await api.retrieveEntity({ key: "LogicalName='account'", select: ["EntitySetName", "PrimaryIdAttribute"] });
check(entity.EntitySetName === "accounts", `retrieveEntity: ${JSON.stringify(entity)}`);
const attrs = await api.retrieveAttributes({
  entityKey: "LogicalName='account'",
  castType: "Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
  select: ["LogicalName"],
  expand: [{ property: "OptionSet", select: ["Options"] }],
});
check(attrs.value.some((a) => a.LogicalName === "industrycode" && a.OptionSet.Options.length === 2), `retrieveAttributes: ${JSON.stringify(attrs)}`);

const id = await api.create({ collection: "accounts", data: { name: "Contoso", industrycode: 1 } });
check(/^[0-9a-f-]{36}$/.test(id), `create returned ${id}`);
const row = await api.retrieve({ collection: "accounts", key: id, select: ["name", "industrycode"] });
check(row.name === "Contoso" && row.industrycode === 1, `retrieve: ${JSON.stringify(row)}`);
await api.update({ collection: "accounts", key: id, data: { name: "Contoso Ltd" } });
check((await api.retrieve({ collection: "accounts", key: id, select: ["name"] })).name === "Contoso Ltd", "update");

const contact = await api.create({
  collection: "contacts",
  data: { fullname: "Ana", "parentcustomerid_account@odata.bind": `/accounts(${id})` },
});
check(/^[0-9a-f-]{36}$/.test(contact), `create with a lookup returned ${contact}`);

// References: the contact's lookup cleared and set through its navigation property, then from the
// account's side of contact_customer_accounts (1:N); one property updated by itself.
const parentOf = async () => (await api.retrieve({ collection: "contacts", key: contact, select: ["_parentcustomerid_value"] }))._parentcustomerid_value;
await api.disassociateSingleValued({ collection: "contacts", primaryKey: contact, navigationProperty: "parentcustomerid_account" });
check((await parentOf()) == null, "disassociateSingleValued clears the lookup");
await api.associateSingleValued({ collection: "contacts", primaryKey: contact, navigationProperty: "parentcustomerid_account", relatedCollection: "accounts", relatedKey: id });
check((await parentOf()) === id, "associateSingleValued sets the lookup");
await api.disassociate({ collection: "accounts", primaryKey: id, relationshipName: "contact_customer_accounts", relatedKey: contact });
check((await parentOf()) == null, "disassociate (1:N) clears the contact's lookup");
await api.associate({ collection: "accounts", primaryKey: id, relationshipName: "contact_customer_accounts", relatedCollection: "contacts", relatedKey: contact });
check((await parentOf()) === id, "associate (1:N) sets the contact's lookup");
await api.updateSingleProperty({ collection: "accounts", key: id, fieldValuePair: { name: "Contoso Single" } });
check((await api.retrieve({ collection: "accounts", key: id, select: ["name"] })).name === "Contoso Single", "updateSingleProperty");
await api.updateSingleProperty({ collection: "accounts", key: id, fieldValuePair: { name: "Contoso Ltd" } });

for (let i = 0; i < 6; i++) {
  await api.create({ collection: "accounts", data: { name: `Paged ${i}` } });
}
const first = await api.retrieveMultiple({ collection: "accounts", select: ["name"], maxPageSize: 4, count: true });
check(first.value.length === 4, `first page: ${first.value.length}`);
check(first["@odata.count"] === 7 || first.oDataCount === 7, `count on the page: ${JSON.stringify(first)}`);
check(typeof first.oDataNextLink === "string", `next link: ${JSON.stringify(first)}`);
const second = await api.retrieveMultiple({ collection: "accounts", select: ["name"] }, first.oDataNextLink);
check(second.value.length === 3 && !second.oDataNextLink, `second page: ${JSON.stringify(second)}`);
const all = await api.retrieveAll({ collection: "accounts", select: ["name"], maxPageSize: 2 });
check(all.value.length === 7, `retrieveAll: ${all.value.length}`);
check((await api.count({ collection: "accounts" })) === 7, "count");
check((await api.count({ collection: "accounts", filter: "name ne 'Contoso Ltd'" })) === 6, "count with a filter");
// $filter functions, as the client sends them.
check((await api.count({ collection: "accounts", filter: "contains(name,'paged')" })) === 6, "contains");
check((await api.count({ collection: "accounts", filter: "not startswith(name,'Paged')" })) === 1, "not startswith");
const listed = await api.retrieveMultiple({
  collection: "accounts",
  select: ["name"],
  filter: "Microsoft.Dynamics.CRM.In(PropertyName='name',PropertyValues=['Paged 1','Paged 2'])",
});
check(listed.value.length === 2, `Microsoft.Dynamics.CRM.In: ${JSON.stringify(listed.value)}`);

await api.deleteRecord({ collection: "contacts", key: contact });
await api.deleteRecord({ collection: "accounts", key: id });
let status = 0;
try {
  await api.retrieve({ collection: "accounts", key: id });
} catch (e) {
  status = e.status;
}
check(status === 404, `a deleted row is a 404 (got ${status})`);

// Upsert (PATCH): a new id is created, an existing one updated; If-None-Match: * refuses the update and
// If-Match: * the create (the client answers null for the 412 and the 404).
const chosen = "6d1c9f3e-5b7a-4c2d-9e8f-0a1b2c3d4e5f";
const nameOf = async (key) => (await api.retrieve({ collection: "accounts", key, select: ["name"] })).name;
await api.upsert({ collection: "accounts", key: chosen, data: { name: "Upserted" } });
check((await nameOf(chosen)) === "Upserted", "upsert creates");
await api.upsert({ collection: "accounts", key: chosen, data: { name: "Upserted again" } });
check((await nameOf(chosen)) === "Upserted again", "upsert updates");
check((await api.upsert({ collection: "accounts", key: chosen, data: { name: "x" }, ifnonematch: "*" })) === null, "If-None-Match: * refuses the update");
const missing = "6d1c9f3e-5b7a-4c2d-9e8f-0a1b2c3d4e60";
check((await api.upsert({ collection: "accounts", key: missing, data: { name: "x" }, ifmatch: "*" })) === null, "If-Match: * refuses the create");
check((await nameOf(chosen)) === "Upserted again", "refused upserts change nothing");

// ETags: every read carries @odata.etag; update and deleteRecord with a stale one answer false (412) and
// change nothing, with the current one succeed; a read with ifnonematch of an unchanged row is a 304.
const tagged = await api.create({ collection: "accounts", data: { name: "Tagged" } });
const etagOf = async () => (await api.retrieve({ collection: "accounts", key: tagged, select: ["name"] }))["@odata.etag"];
const v1 = await etagOf();
check(/^W\/"\d+"$/.test(v1), `@odata.etag: ${v1}`);
check((await api.update({ collection: "accounts", key: tagged, data: { name: "Tagged 2" }, ifmatch: v1 })) === true, "update with the current ETag");
const v2 = await etagOf();
check(v2 !== v1, "the ETag changes with the row");
check((await api.update({ collection: "accounts", key: tagged, data: { name: "lost" }, ifmatch: v1 })) === false, "update with a stale ETag is refused");
check((await nameOf(tagged)) === "Tagged 2", "the refused update changed nothing");
const unchanged = await api.retrieve({ collection: "accounts", key: tagged, select: ["name"], ifnonematch: v2 });
check(unchanged == null || unchanged.name === undefined, `a conditional read of an unchanged row: ${JSON.stringify(unchanged)}`);
check((await api.deleteRecord({ collection: "accounts", key: tagged, ifmatch: v1 })) === false, "delete with a stale ETag is refused");
check((await api.deleteRecord({ collection: "accounts", key: tagged, ifmatch: v2 })) === true, "delete with the current ETag");

// $batch: a change set (an account, and a contact bound to it by Content-ID), then a read.
api.startBatch();
api.create({ collection: "accounts", data: { name: "Batched" }, contentId: "1" });
api.create({ collection: "contacts", data: { fullname: "In a batch", "parentcustomerid_account@odata.bind": "$1" } });
api.retrieveMultiple({ collection: "accounts", select: ["name"], filter: "name eq 'Batched'" });
const results = await api.executeBatch();
check(Array.isArray(results) && results.length === 3, `executeBatch: ${JSON.stringify(results)}`);
check(/^[0-9a-f-]{36}$/.test(results[0]) && /^[0-9a-f-]{36}$/.test(results[1]), `batch creates: ${JSON.stringify(results)}`);
check(results[2].value.length === 1 && results[2].value[0].name === "Batched", `batch read: ${JSON.stringify(results[2])}`);
const bound = await api.retrieve({ collection: "contacts", key: results[1], select: ["_parentcustomerid_value"] });
check(bound._parentcustomerid_value === results[0], `the $1 bind: ${JSON.stringify(bound)}`);

// A change set that fails halfway leaves nothing behind; the client reports the failure.
api.startBatch();
api.create({ collection: "accounts", data: { name: "Doomed" } });
api.create({ collection: "accounts", data: { nosuchcolumn: 1 } });
let failure = null;
try {
  const answer = await api.executeBatch();
  failure = (Array.isArray(answer) ? answer : [answer]).find((r) => r instanceof Error || r?.status >= 400) ?? null;
} catch (e) {
  failure = e;
}
check(failure !== null && failure.status === 400, `a failed change set: ${failure}`);
check((await api.count({ collection: "accounts", filter: "name eq 'Doomed'" })) === 0, "the failed change set was rolled back");
console.log("dynamics-web-api: ok");
