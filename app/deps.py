"""Dependencies shared by every domain."""

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.ratelimit import RateLimiter


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_rate_limiter(request: Request) -> RateLimiter:
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]


def client_address(request: Request) -> str | None:
    """The caller's network address (the proxy's client when FORWARDED_ALLOW_IPS trusts it)."""
    return request.client.host if request.client else None
