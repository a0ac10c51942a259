"""aio-kong (a Kong Admin API client we did not write) against the stand-in at KONG_URL:
CRUD through its components, its paginator, tag filters, a 409 on a duplicate name,
credentials (form-encoded by aio-kong) and its apply_json. Prints one line per check;
exits non-zero on the first failure."""

import asyncio
import os
import sys

from kong.client import Kong, KongResponseError


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


async def main():
    async with Kong(url=os.environ["KONG_URL"]) as cli:
        # CRUD
        svc = await cli.services.create(name="shop", host="shop.ns.svc", port=8080, tags=["deployctl:shop"])
        check(svc.name == "shop" and svc["port"] == 8080 and svc["retries"] == 5, "create a service with defaults")
        check((await cli.services.get("shop")).id == svc.id, "get by name")
        check(await cli.services.has(svc.id) and not await cli.services.has("nope"), "has by id, not a missing one")
        svc = await cli.services.update("shop", read_timeout=5000)
        check(svc["read_timeout"] == 5000 and svc["host"] == "shop.ns.svc", "update (PATCH) keeps other fields")
        route = await svc.routes.create(name="items", paths=["/items"], methods=["GET"], strip_path=False)
        check(route["service"]["id"] == svc.id and route["strip_path"] is False, "create a route under the service")
        plugin = await svc.plugins.create(name="rate-limiting", config={"minute": 10})
        check(plugin["config"]["policy"] == "local" and plugin["config"]["minute"] == 10, "a plugin with config defaults")
        # 409 on a duplicate name
        try:
            await cli.services.create(name="shop", host="x")
            check(False, "a duplicate name is refused")
        except KongResponseError as e:
            check(e.status == 409 and e.message.get("name") == "unique constraint violation", "409 on a duplicate name")
        # 400 on an unknown plugin
        try:
            await cli.plugins.create(name="not-a-plugin")
            check(False, "an unknown plugin is refused")
        except KongResponseError as e:
            check(e.status == 400 and "not enabled" in e.message["message"], "400 on an unknown plugin")
        # Consumers and credentials (aio-kong sends these form-encoded)
        consumer = await cli.consumers.create(username="dev", tags=["deployctl:shop"])
        key = await consumer.keyauths.create_credentials(data={"key": "k-123"})
        check(key["key"] == "k-123" and key["consumer"]["id"] == consumer.id, "a key-auth credential (form body)")
        same = await consumer.keyauths.create_or_update_credentials({"key": "k-123"})
        check(same["id"] == key["id"], "create_or_update finds the existing key")
        basic = await consumer.basicauths.create_or_update_credentials({"username": "dev", "password": "pw"})
        check(basic["username"] == "dev", "a basic-auth credential")
        generated = await consumer.keyauths.create_credentials()
        check(len(generated["key"]) == 32, "a key is generated when none is given")
        # Pagination through aio-kong's paginator (`next` links) and size
        for i in range(12):
            await cli.services.create(name=f"svc-{i:02}", host="h", tags=["bulk", "even" if i % 2 == 0 else "odd"])
        page = await cli.services.get_list(size=5)
        check(len(page) == 5, "size=5 gives one page of 5")
        everything = await cli.services.get_full_list(size=5)
        names = sorted(s.name for s in everything)
        check(len(names) == 13 and len(set(names)) == 13, "paginate (size=5) yields all 13 services once")
        # Tags
        evens = await cli.services.get_full_list(tags="bulk,even")
        check(len(evens) == 6, "tags=bulk,even (AND)")
        either = await cli.services.get_full_list(tags="even/deployctl:shop")
        check(len(either) == 7, "tags=even/deployctl:shop (OR)")
        # Delete: aio-kong removes routes and plugins first, then the service
        check(await cli.services.delete("shop") is True, "delete the service (routes and plugins first)")
        check(not await cli.services.has("shop"), "gone")
        check(len(await cli.routes.get_list()) == 0 and len(await cli.plugins.get_list()) == 0, "its routes and plugins gone")
        # apply_json: aio-kong's own declarative apply
        result = await cli.apply_json({
            "services": [{
                "name": "api",
                "host": "api.ns.svc",
                "tags": ["deployctl:api"],
                "routes": [{"name": "api-root", "paths": ["/api"]}],
                "plugins": [{"name": "cors", "config": {"origins": ["*"]}}],
            }],
            "consumers": [{"username": "api-user", "groups": ["g1"], "auths": [{"type": "key-auth", "config": {"key": "api-key"}}]}],
        })
        check(result["services"][0]["routes"][0]["name"] == "api-root", "apply_json creates a service with a route")
        again = await cli.apply_json({"services": [{"name": "api", "host": "api.ns.svc", "routes": [], "plugins": []}]})
        check(again["services"][0]["routes"] == [] and len(await cli.routes.get_list()) == 0, "apply_json again clears the route")
        acls = await (await cli.consumers.get("api-user")).acls.get_list()
        check([a["group"] for a in acls] == ["g1"], "an ACL group through the consumer")
        await cli.delete_all()
        check(len(await cli.services.get_list()) == 0 and len(await cli.consumers.get_list()) == 0, "delete_all")


asyncio.run(main())
print("aio-kong: all checks passed")
