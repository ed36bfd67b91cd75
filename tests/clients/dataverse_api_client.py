"""PyPI dataverse-api 1.4.3 against `weft up --tls`, through its public API only: `entity()` (which reads
the table's metadata, alternate keys, relationships and whether it supports CreateMultiple), create (one by one and by CreateMultiple), paged
read with formatted values, delete.

Run by tests/all/clients.rs as `python dataverse_api_client.py https://127.0.0.1:PORT`, with REQUESTS_CA_BUNDLE set
to weft's development CA. The library takes an authenticated requests.Session; weft on loopback needs no
sign-in, so a plain session is that session.
"""

import sys

import requests
from dataverse_api.dataverse import DataverseClient


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


client = DataverseClient(session=requests.Session(), environment_url=sys.argv[1])
account = client.entity("account")
check(account.entity_set_name == "accounts", f"entity set: {account.entity_set_name}")
check(account.primary_id_attr == "accountid", f"primary id: {account.primary_id_attr}")
check(account.alternate_keys == {}, f"alternate keys: {account.alternate_keys}")
check(account.supports_create_multiple, "weft lists CreateMultiple for account")
check(
    "contact_customer_accounts" in account.relationships.collection_valued,
    f"relationships: {account.relationships}",
)

created = account.create(
    [{"name": f"Row {i}", "industrycode": 1 + i % 2} for i in range(5)], return_created=True
)
ids = [r.json()["accountid"] for r in created]
check(len(set(ids)) == 5, f"created: {ids}")

pages = account.read(select=["name", "industrycode"], page_size=2, return_responses=True)
check([len(p.json()["value"]) for p in pages] == [2, 2, 1], "three pages of at most 2")
rows = account.read(filter="industrycode eq 2", select=["industrycode"], return_formatted_values=True)
check(len(rows) == 2, f"filtered: {rows}")
check(
    all(r["industrycode@OData.Community.Display.V1.FormattedValue"] == "Agriculture" for r in rows),
    f"formatted values: {rows}",
)

# CreateMultiple, as the library sends it (one request per 500 rows, each row typed by @odata.type).
bulk = account.create([{"name": f"Bulk {i}"} for i in range(3)], mode="multiple")
bulk_ids = [i for r in bulk for i in r.json()["Ids"]]
check(len(set(bulk_ids)) == 3, f"CreateMultiple ids: {bulk_ids}")
named = account.read(filter="startswith(name,'Bulk ')", select=["name"])
check(sorted(r["name"] for r in named) == ["Bulk 0", "Bulk 1", "Bulk 2"], f"bulk rows: {named}")

account.delete(ids=ids + bulk_ids)
check(account.read(select=["name"]) == [], "every row deleted")
print("dataverse-api: ok")
