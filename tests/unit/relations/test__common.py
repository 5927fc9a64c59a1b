"""Helpers shared by the relation modules (src/relations/_common.py)."""

import pydantic
import pytest

from relations import _common, database


class _Model(pydantic.BaseModel):
    port: int

    @pydantic.field_validator("port", mode="before")
    @classmethod
    def _port(cls, value: object) -> int:
        return _common.parse_port(str(value))


class _Root(pydantic.RootModel[int]):
    @pydantic.model_validator(mode="after")
    def _positive(self) -> "_Root":
        if self.root < 1:
            raise ValueError("must be positive")
        return self


def test_first_error_names_the_field_and_drops_pydantics_prefix() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        _Model.model_validate({"port": "70000"})
    assert _common.first_error(caught.value) == ("port", "'70000' is not a port number (1-65535)")


def test_first_error_without_a_location_uses_no_field() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        _Root.model_validate(0)
    assert _common.first_error(caught.value) == ("data", "must be positive")
    assert _common.first_error(caught.value, no_field="") == ("", "must be positive")


@pytest.mark.parametrize(("text", "flag"), [("True", True), (" yes ", True), ("1", True), ("no", False), ("", False)])
def test_parse_flag(text: str, flag: bool) -> None:
    assert _common.parse_flag(text) is flag


def test_parse_flag_refuses_other_text() -> None:
    with pytest.raises(ValueError, match="'maybe' is not true or false"):
        _common.parse_flag("maybe")


@pytest.mark.parametrize("text", ["0", "65536", "-1", "80a", "123456", ""])
def test_parse_port_refuses_non_ports(text: str) -> None:
    with pytest.raises(ValueError, match="is not a port number"):
        _common.parse_port(text)


def test_database_keeps_the_helpers_it_used_to_define() -> None:
    for name in ("parse_flag", "parse_port", "read_secret", "validate_host"):
        assert getattr(database, name) is getattr(_common, name)
