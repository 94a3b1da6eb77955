"""@workflow and Registry: names, versions, timeouts and the types taken from annotations."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from forgeflow import (
    ConfigurationError,
    DuplicateWorkflowError,
    InputValidationError,
    Registry,
    WorkflowContext,
    WorkflowDefinition,
    WorkflowNotFound,
    default_registry,
    workflow,
)


class Order(BaseModel):
    """A workflow input."""

    order_id: str
    quantity: int


class Receipt(BaseModel):
    """A workflow output."""

    total: float


def make(registry: Registry, version: int, **options: Any) -> WorkflowDefinition[Any, Any]:
    @workflow(version=version, registry=registry, name="pay", **options)
    async def pay(ctx: WorkflowContext, order: Order) -> Receipt:
        return Receipt(total=order.quantity * 2.0)

    return pay


def test_workflow_records_name_version_timeout_and_queue() -> None:
    """The decorator returns a definition with the given metadata and sensible defaults."""
    registry = Registry()

    @workflow(registry=registry)
    async def ship(ctx: WorkflowContext) -> None:
        return None

    @workflow(version=4, timeout="30m", name="billing.charge", queue="payments", registry=registry)
    async def charge(ctx: WorkflowContext, amount: int) -> int:
        return amount

    assert (ship.name, ship.version, ship.timeout, ship.queue) == (
        "ship",
        1,
        timedelta(hours=24),
        "default",
    )
    assert (charge.name, charge.version, charge.timeout, charge.queue) == (
        "billing.charge",
        4,
        timedelta(minutes=30),
        "payments",
    )
    assert charge.key == ("billing.charge", 4)
    assert not charge.deprecated


def test_input_and_output_types_come_from_the_annotations() -> None:
    """The second parameter's annotation is the input type, the return annotation the output."""
    pay = make(Registry(), 1)
    assert pay.input_type is Order
    assert pay.output_type is Receipt
    assert pay.takes_input


def test_a_workflow_without_an_input_parameter_takes_none() -> None:
    """A (ctx)-only workflow accepts no input."""

    @workflow(registry=Registry())
    async def tick(ctx: WorkflowContext) -> int:
        return 1

    assert not tick.takes_input
    assert tick.validate_input(None) is None


def test_input_is_validated_and_coerced_by_its_type() -> None:
    """A dict matching the model becomes the model; lax values are coerced."""
    pay = make(Registry(), 1)
    assert pay.validate_input({"order_id": "o1", "quantity": "3"}) == Order(
        order_id="o1", quantity=3
    )
    assert pay.load_input(pay.dump_input(Order(order_id="o2", quantity=1))) == Order(
        order_id="o2", quantity=1
    )


def test_invalid_input_raises_input_validation_error_naming_each_field() -> None:
    """Every offending field appears in the message and in .errors."""
    pay = make(Registry(), 1)
    with pytest.raises(InputValidationError) as caught:
        pay.validate_input({"quantity": "lots"})
    message = str(caught.value)
    assert "'pay' v1" in message
    assert "order_id: Field required" in message
    assert "quantity:" in message
    assert sorted(e["loc"] for e in caught.value.errors) == [["order_id"], ["quantity"]]


def test_builtin_generic_input_types_are_validated() -> None:
    """Any type a pydantic TypeAdapter accepts can be the input type."""

    @workflow(registry=Registry())
    async def total(ctx: WorkflowContext, amounts: list[int]) -> int:
        return sum(amounts)

    assert total.validate_input(["1", 2]) == [1, 2]
    with pytest.raises(InputValidationError, match="1: "):
        total.validate_input([1, "x"])


def test_get_returns_the_latest_non_deprecated_version() -> None:
    """get(name) skips deprecated versions and picks the highest remaining one."""
    registry = Registry()
    v1 = make(registry, 1)
    v2 = make(registry, 2)
    make(registry, 3, deprecated=True)
    assert registry.get("pay") is v2
    assert registry.get_version("pay", 1) is v1
    assert registry.get_version("pay", 3).deprecated


def test_unknown_names_and_versions_raise_workflow_not_found() -> None:
    """get and get_version raise WorkflowNotFound; find returns None."""
    registry = Registry()
    make(registry, 1, deprecated=True)
    with pytest.raises(WorkflowNotFound):
        registry.get("pay")  # only a deprecated version exists
    with pytest.raises(WorkflowNotFound):
        registry.get("nothing")
    with pytest.raises(WorkflowNotFound, match="version 2"):
        registry.get_version("pay", 2)
    assert registry.find("pay", 2) is None


def test_a_duplicate_name_and_version_raises() -> None:
    """Registering another function under a taken (name, version) raises DuplicateWorkflowError."""
    registry = Registry()
    make(registry, 1)
    with pytest.raises(DuplicateWorkflowError, match="'pay' version 1"):
        make(registry, 1)
    make(registry, 2)  # another version of the same name is fine


def test_registering_the_same_definition_again_is_harmless() -> None:
    """Re-registering one definition (a module imported twice) is not a duplicate."""
    registry = Registry()
    pay = make(registry, 1)
    registry.register(pay)
    assert len(registry) == 1


def test_a_registry_lists_its_definitions() -> None:
    """names, definitions, len and `in` describe what a registry holds."""
    registry = Registry()
    make(registry, 1)
    make(registry, 2)

    @workflow(registry=registry)
    async def audit(ctx: WorkflowContext) -> None:
        return None

    assert registry.names() == ["audit", "pay"]
    assert len(registry) == 3
    assert "pay" in registry and "other" not in registry
    assert sorted(d.key for d in registry.definitions()) == [("audit", 1), ("pay", 1), ("pay", 2)]


def test_without_a_registry_workflows_go_to_the_default_registry() -> None:
    """@workflow without registry= registers into forgeflow.default_registry."""

    @workflow(version=1, name="unit_tests.default_registry_probe")
    async def probe(ctx: WorkflowContext) -> None:
        return None

    assert default_registry.get_version("unit_tests.default_registry_probe", 1) is probe


@pytest.mark.parametrize("version", [0, -1, True, "1", 1.0])
def test_a_version_must_be_a_positive_integer(version: Any) -> None:
    """version=0, negative, bool or non-int raises ValueError."""
    with pytest.raises(ValueError, match="version"):
        workflow(version=version, registry=Registry())


@pytest.mark.parametrize("timeout", ["0s", 0, "soon"])
def test_a_timeout_must_be_a_positive_duration(timeout: Any) -> None:
    """A zero or malformed timeout raises ValueError."""
    with pytest.raises(ValueError, match="timeout"):
        workflow(timeout=timeout, registry=Registry())


def test_only_async_functions_with_ctx_and_at_most_one_input_are_workflows() -> None:
    """A sync function, or one with a wrong number of parameters, raises TypeError."""
    decorate = workflow(registry=Registry())

    def sync(ctx: WorkflowContext) -> None:
        return None

    async def too_many(ctx: WorkflowContext, a: int, b: int) -> None:
        return None

    async def none_at_all() -> None:
        return None

    for fn in (sync, too_many, none_at_all):
        with pytest.raises(TypeError):
            decorate(fn)  # type: ignore[arg-type]


def test_annotations_may_name_classes_defined_in_the_enclosing_function() -> None:
    """A pydantic model defined inside a function types the input and output of a workflow."""

    class LocalOrder(BaseModel):
        sku: str
        quantity: int

    class LocalReceipt(BaseModel):
        total: float

    @workflow(registry=Registry())
    async def local(ctx: WorkflowContext, order: LocalOrder) -> LocalReceipt:
        return LocalReceipt(total=order.quantity * 1.5)

    assert local.input_type is LocalOrder
    assert local.output_type is LocalReceipt
    order = local.validate_input({"sku": "a-1", "quantity": "2"})
    assert order == LocalOrder(sku="a-1", quantity=2)


def test_an_unresolvable_annotation_raises_a_configuration_error_naming_it() -> None:
    """A name no scope defines fails at decoration with ConfigurationError, not NameError."""
    with pytest.raises(ConfigurationError) as caught:

        @workflow(registry=Registry(), name="mystery")
        async def mystery(ctx: WorkflowContext, order: NowhereDefined) -> None:  # type: ignore[name-defined]  # noqa: F821
            return None

    assert not isinstance(caught.value, NameError)
    assert "mystery" in caught.value.message
    assert "NowhereDefined" in caught.value.message
