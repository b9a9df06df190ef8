"""Prices: check what a task would cost before creating it, and the current rates."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from core.stores import RepoNotFound, StoreError
from core.tasks import MIN_HOURS_TO_COMPLETE
from validator.api.errors import ERROR_RESPONSES, ApiError
from validator.pricing import ModelSizeUnknown, Quote, quote_image, quote_text

router = APIRouter(tags=["prices"], responses=ERROR_RESPONSES)

_HOURS = Field(ge=MIN_HOURS_TO_COMPLETE, le=168, allow_inf_nan=False, description="Training time budget in hours")


class TextPriceRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model_repo: str = Field(min_length=1, max_length=256, description="Base model repository id ('org/name')")
    hours_to_complete: float = _HOURS


class ImagePriceRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", protected_namespaces=())

    model_repo: str | None = Field(default=None, max_length=256, description="Ignored: images have one flat rate")
    hours_to_complete: float = _HOURS


class PriceResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    success: bool = True
    price: float = Field(description="USD, what creating the task charges")
    currency: str = "USD"
    usd_per_hour: float
    hours_to_complete: float
    model_parameters: int | None = Field(default=None, description="The base model's parameter count (text only)")


class TextPriceBucket(BaseModel):
    max_params_b: float | None = Field(description="Up to this many billion parameters; null: any larger model")
    usd_per_hour: float


class PricesResponse(BaseModel):
    currency: str = "USD"
    text: list[TextPriceBucket]
    image_usd_per_hour: float
    free_tasks: bool = Field(description="True when this validator charges nothing for tasks (a local network)")


def _price(quote: Quote) -> PriceResponse:
    return PriceResponse(
        price=float(quote.price_usd),
        usd_per_hour=float(quote.usd_per_hour),
        hours_to_complete=quote.hours,
        model_parameters=quote.model_parameters,
    )


async def text_quote(request: Request, model_repo: str, hours: float) -> Quote:
    """The price of a text task, or an ApiError naming model_repo when its size cannot be read."""
    ctx = request.app.state.context
    try:
        return await quote_text(ctx.model_store, ctx.settings.text_price_buckets, model_repo, hours)
    except RepoNotFound:
        raise ApiError(404, f"model_repo: {model_repo[:100]!r} is not in this validator's model store") from None
    except (StoreError, ModelSizeUnknown) as error:
        raise ApiError(422, f"model_repo: cannot read the model's size: {error}", code="validation_error") from None


@router.post("/v1/tasks/text/check_price", response_model=PriceResponse)
async def check_text_price(body: TextPriceRequest, request: Request) -> PriceResponse:
    """The price of a text task (instruct, chat, DPO, GRPO): the model's size bucket rate times hours."""
    return _price(await text_quote(request, body.model_repo, body.hours_to_complete))


@router.post("/v1/tasks/image/check_price", response_model=PriceResponse)
async def check_image_price(body: ImagePriceRequest, request: Request) -> PriceResponse:
    """The price of an image task: a flat hourly rate times hours."""
    settings = request.app.state.context.settings
    return _price(quote_image(settings.image_usd_per_hour, body.hours_to_complete))


@router.get("/v1/prices", response_model=PricesResponse)
async def prices(request: Request) -> PricesResponse:
    """The current rates."""
    settings = request.app.state.context.settings
    return PricesResponse(
        text=[TextPriceBucket(**bucket.model_dump()) for bucket in settings.text_price_buckets],
        image_usd_per_hour=settings.image_usd_per_hour,
        free_tasks=bool(settings.free_tasks),
    )
