import pytest


@pytest.fixture(params=[pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    """Read by anyio's plugin only (the project runs once under each runner)."""
    return request.param
