"""Domain errors are values with stable codes; the gateway maps codes to HTTP, workers store them on jobs."""

from __future__ import annotations


class DomainError(Exception):
    code = "DOMAIN_ERROR"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "detail": self.detail}


class NotFound(DomainError):
    code = "NOT_FOUND"


class BookingSlotTaken(DomainError):
    code = "BOOKING_SLOT_TAKEN"


class BookingOutsideAvailability(DomainError):
    code = "BOOKING_OUTSIDE_AVAILABILITY"


class BookingInvalidTransition(DomainError):
    code = "BOOKING_INVALID_TRANSITION"


class JobAttemptsExhausted(DomainError):
    code = "JOB_ATTEMPTS_EXHAUSTED"
