"""FormScreen: a small dialog of labelled inputs (rate limit, scale a node)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

#: A rate limit as workers take it: N, N/s, N/m or N/h (0 lifts the limit).
RATE_PATTERN = re.compile(r"^\d+(\.\d+)?(/[smh])?$")

#: Returns an error message for a value, or None when it is acceptable.
Validator = Callable[[str], str | None]


def rate_error(value: str) -> str | None:
    """Why a rate limit is not one workers understand (None when it is)."""
    return None if RATE_PATTERN.match(value) else "a rate is N/s, N/m or N/h (0 lifts it)"


def count_error(value: str) -> str | None:
    """Why a process count is not a positive whole number (None when it is)."""
    return None if value.isdigit() and int(value) > 0 else "a process count is a whole number > 0"


def required(value: str) -> str | None:
    return None if value else "required"


@dataclass(frozen=True)
class FormField:
    """One input of a form."""

    name: str
    label: str
    placeholder: str = ""
    value: str = ""
    validate: Validator = required


class FormScreen(ModalScreen[dict[str, str] | None]):
    """Ask for a few values; dismiss with {name: value}, or None on escape."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, fields: list[FormField], submit: str = "Apply") -> None:
        super().__init__()
        self.title_text = title
        self.fields = fields
        self.submit_label = submit

    def compose(self) -> ComposeResult:
        with Vertical(id="form-box"):
            yield Label(self.title_text, id="form-title", markup=False)
            for field in self.fields:
                yield Label(field.label, classes="form-label", markup=False)
                yield Input(field.value, placeholder=field.placeholder, id=f"field-{field.name}")
            yield Label("", id="form-error", markup=False)
            with Horizontal(id="form-buttons"):
                yield Button(self.submit_label, id="submit", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        empty = [f for f in self.fields if not f.value] or self.fields
        self.query_one(f"#field-{empty[0].name}", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        names = [field.name for field in self.fields]
        index = names.index((event.input.id or "").removeprefix("field-"))
        if index + 1 < len(names):
            self.query_one(f"#field-{names[index + 1]}", Input).focus()
        else:
            self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.action_cancel()

    def action_submit(self) -> None:
        values = {
            f.name: self.query_one(f"#field-{f.name}", Input).value.strip() for f in self.fields
        }
        for field in self.fields:
            error = field.validate(values[field.name])
            if error:
                self.query_one("#form-error", Label).update(f"{field.label}: {error}")
                self.query_one(f"#field-{field.name}", Input).focus()
                return
        self.dismiss(values)

    def action_cancel(self) -> None:
        self.dismiss(None)
