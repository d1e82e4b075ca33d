"""Settings for apps that tests drive through Starlette's TestClient.

TestClient sends `Host: testserver`, which the production default of ALLOWED_HOSTS refuses
(400 `bad_host`, see http/browser.py). Tests that build an app add that one name with
`allowed_hosts=TESTCLIENT_HOSTS`, so the defaults stay as strict as they ship.
"""

from __future__ import annotations

from orchestrator.settings import Settings

#: The name Starlette's TestClient sends in its Host header.
TESTCLIENT_HOST = "testserver"
#: The default ALLOWED_HOSTS plus TestClient's name.
TESTCLIENT_HOSTS = (*Settings().allowed_hosts, TESTCLIENT_HOST)
