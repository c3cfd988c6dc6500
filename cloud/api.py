"""The cloud's one NinjaAPI: the routers of each app behind token or session auth, on the
shared docs paths and error shape (workers.common.api)."""

from cloud.accounts.api import router as auth_router
from cloud.accounts.auth import api_auth
from cloud.domains.api import router as domains_router
from cloud.edge.api import router as edge_router
from cloud.homes.api import router as homes_router
from workers.common.api import redoc_view, site_api

api = site_api(
    "cloudathome cloud API",
    "Homes, their SSH identities, the names they own and the proxy mappings of the cloud edge.",
    api_auth,
)
api.add_router("/auth", auth_router)
api.add_router("/homes", homes_router)
api.add_router("/homes", domains_router)
api.add_router("/admin", edge_router)
redoc = redoc_view(api)
