"""keelwork: run an AI prototype as a production service.

svc = keelwork.load_service("examples/support_triage")
async with svc:
    prediction = await svc.predict({"text": "my card still has not arrived"})
"""

from keelwork.errors import (
    AuthError,
    ContractError,
    KeelworkError,
    ModelError,
    OverloadedError,
    RequestError,
    SpecError,
    Violation,
)
from keelwork.service import Prediction, Service, load_service
from keelwork.spec import ServiceSpec, load_spec

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "ContractError",
    "KeelworkError",
    "ModelError",
    "OverloadedError",
    "Prediction",
    "RequestError",
    "Service",
    "ServiceSpec",
    "SpecError",
    "Violation",
    "__version__",
    "load_service",
    "load_spec",
]
