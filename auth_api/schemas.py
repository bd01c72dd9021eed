"""Request and response bodies of the write API: one source for validation and OpenAPI."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from auth_api.passwords import password_problem


class _Body(BaseModel):
    # Extra fields are an error: a typo must not be silently ignored.
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=False)


class RegisterRequest(_Body):
    email: EmailStr = Field(max_length=254, examples=["ada@example.com"])
    password: str = Field(min_length=8, max_length=128, examples=["correct horse battery"])

    @field_validator("password")
    @classmethod
    def _strong(cls, value: str) -> str:
        return _strong(value)


# PostgreSQL text cannot hold NUL: such an email can match no account, so it is refused early.
NO_NUL = r"^[^\x00]*$"


class LoginRequest(_Body):
    email: str = Field(min_length=1, max_length=254, pattern=NO_NUL, examples=["ada@example.com"])
    password: str = Field(min_length=1, max_length=128, examples=["correct horse battery"])


CONSISTENCY = (
    "Send it as X-Consistency-Token to the query API (with this user's access token) to be answered "
    "only once this write is visible."
)


class RegisterResponse(BaseModel):
    id: str
    event_id: str
    consistency_token: str = Field(description=CONSISTENCY)
    message: str = "User registered successfully"


class LoginResponse(BaseModel):
    token: str = Field(description="The access token (kept for older clients).")
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int
    event_id: str
    consistency_token: str = Field(description=CONSISTENCY)


class RefreshResponse(BaseModel):
    access_token: str
    refresh_token: str = Field(description="The next refresh token; the one just used is spent.")
    token_type: str = "Bearer"
    expires_in: int


def _strong(value: str) -> str:
    problem = password_problem(value)
    if problem:
        raise ValueError(problem)
    return value


class ChangePasswordRequest(_Body):
    current_password: str = Field(min_length=1, max_length=128, examples=["correct horse battery"])
    new_password: str = Field(min_length=8, max_length=128, examples=["a brand new passphrase"])

    @field_validator("new_password")
    @classmethod
    def _strong(cls, value: str) -> str:
        return _strong(value)


class EmailChangeRequest(_Body):
    password: str = Field(min_length=1, max_length=128, examples=["correct horse battery"])
    new_email: EmailStr = Field(max_length=254, examples=["ada@new.example"])


class ConfirmEmailRequest(_Body):
    code: str = Field(
        pattern=r"^[0-9]{6}$", examples=["042137"], description="The code mailed to the new address."
    )


class DeactivateRequest(_Body):
    reason: str | None = Field(default=None, max_length=200, pattern=NO_NUL, examples=["abuse report 1234"])


class CommandResponse(BaseModel):
    """What every account command answers: its last event and a read-your-writes token."""

    event_id: str | None = Field(description="The command's last event; null when nothing changed.")
    consistency_token: str | None = Field(description=CONSISTENCY)
    ended_sessions: int = Field(0, description="Sessions the command ended.")


class EmailChangeResponse(CommandResponse):
    expires_at: str = Field(description="When the mailed code stops working (RFC 3339).")
    message: str = "A code was sent to the new address; confirm it at /users/me/email/confirm."


class EmailChangedResponse(CommandResponse):
    email: str


class DeleteAccountRequest(_Body):
    password: str = Field(min_length=1, max_length=128, examples=["correct horse battery"])
