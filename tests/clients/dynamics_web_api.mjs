// npm dynamics-web-api 2.5.0 against `weft up --tls`, through its public API only: WhoAmI, table metadata,
// create, retrieve, update, query with paging and count, delete.
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

await api.deleteRecord({ collection: "contacts", key: contact });
await api.deleteRecord({ collection: "accounts", key: id });
let status = 0;
try {
  await api.retrieve({ collection: "accounts", key: id });
} catch (e) {
  status = e.status;
}
check(status === 404, `a deleted row is a 404 (got ${status})`);
console.log("dynamics-web-api: ok");
