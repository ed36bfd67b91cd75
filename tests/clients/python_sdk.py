"""Microsoft's Python SDK (powerplatform-dataverse-client 1.1.0) against `weft up --tls`, through its public
API only: table metadata, create, retrieve (with an expanded lookup), update, query with paging and count,
delete; then a table of its own (`tables.create` with a choice column, `tables.add_columns`, a row in it,
`tables.delete`).

Run by tests/all/clients.rs as `python python_sdk.py https://127.0.0.1:PORT`, with REQUESTS_CA_BUNDLE set
to weft's development CA. The SDK asks an azure-identity TokenCredential for a token; weft on loopback has
no sign-in, so a credential returning a fixed token stands in (the SDK's public `credential` parameter).
"""

import sys
import time
from enum import IntEnum

from azure.core.credentials import AccessToken, TokenCredential
from PowerPlatform.Dataverse.client import DataverseClient


class FixedToken(TokenCredential):
    """A credential for a server that needs no sign-in."""

    def get_token(self, *scopes, **kwargs):
        return AccessToken("weft-loopback", int(time.time()) + 3600)


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


base = sys.argv[1]
client = DataverseClient(base, FixedToken())

info = client.tables.get("account")
check(info is not None, "tables.get('account') found the table")
check(info["entity_set_name"] == "accounts", f"entity set name: {info}")
check(info["primary_id_attribute"] == "accountid", f"primary id: {info}")
check(client.tables.get("nosuchtable") is None, "an unknown table is None")
names = [t.get("LogicalName") for t in client.tables.list()]
check("account" in names and "contact" in names, f"tables.list: {names}")

# A choice given by its label: the SDK reads the picklist metadata to turn it into its value.
account_id = client.records.create("account", {"name": "Fourth Coffee", "industrycode": "Agriculture"})
check(isinstance(account_id, str) and len(account_id) == 36, f"create returned {account_id!r}")
row = client.records.retrieve("account", account_id, select=["name", "industrycode"])
check(row is not None and row["name"] == "Fourth Coffee", f"get: {row}")
check(row["industrycode"] == 2, f"the label became its value: {row}")

client.records.update("account", account_id, {"name": "Fourth Coffee Ltd"})
row = client.records.retrieve("account", account_id, select=["name"])
check(row["name"] == "Fourth Coffee Ltd", f"update: {row}")

for i in range(7):
    client.records.create("account", {"name": f"Paged {i}"})
pages = list(
    client.records.get(
        "account", filter="name ne 'x'", select=["name"], page_size=3
    )
)
sizes = [len(p) for p in pages]
check(sizes == [3, 3, 2], f"pages of 3 over 8 rows: {sizes}")
result = client.records.list("account", select=["name"], count=True, page_size=5)
check(len(list(result)) == 8, "list collects every page")

contact_id = client.records.create(
    "contact", {"fullname": "Ana", "parentcustomerid_account@odata.bind": f"/accounts({account_id})"}
)
contact = client.records.retrieve(
    "contact", contact_id, select=["fullname"], expand=["parentcustomerid_account($select=name)"]
)
check(contact["parentcustomerid_account"]["name"] == "Fourth Coffee Ltd", f"expanded lookup: {contact}")

client.records.delete("contact", contact_id)
client.records.delete("account", account_id)
check(client.records.retrieve("account", account_id) is None, "a deleted row is None")


class Size(IntEnum):
    SMALL = 1
    LARGE = 2


# tables.create sends the CreateEntities action, then reads the table back from EntityDefinitions.
created = client.tables.create(
    "new_Product",
    {"new_Price": "decimal", "new_Size": Size, "new_Count": "int"},
    solution="WeftTests",
    primary_column="new_Title",
    display_name="Product",
)
check(created["table_logical_name"] == "new_product", f"created table: {created}")
check(created["entity_set_name"] == "new_products", f"entity set of the new table: {created}")
check(created["primary_name_attribute"] == "new_title", f"primary name: {created}")
found = client.tables.get("new_Product")
check(found is not None and found["metadata_id"] == created["metadata_id"], f"tables.get: {found}")
added = client.tables.add_columns("new_Product", {"new_Notes": "memo", "new_Active": "bool"})
check(added == ["new_Notes", "new_Active"], f"columns added: {added}")
product_id = client.records.create(
    "new_product",
    {
        "new_title": "Widget",
        "new_price": 9.5,
        "new_size": "Large",
        "new_count": 3,
        "new_notes": "fragile",
        "new_active": True,
    },
)
product = client.records.retrieve(
    "new_product",
    product_id,
    select=["new_title", "new_price", "new_size", "new_count", "new_notes", "new_active"],
)
check(
    product["new_title"] == "Widget"
    and float(product["new_price"]) == 9.5
    and product["new_size"] == 2
    and product["new_count"] == 3
    and product["new_notes"] == "fragile"
    and product["new_active"] is True,
    f"a row of the new table: {product}",
)
client.tables.delete("new_Product")
check(client.tables.get("new_Product") is None, "a deleted table is gone")
print("python sdk: ok")
