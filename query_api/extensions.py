"""Extension singletons of the read side, bound to an app in ``create_app``."""

from flask_sqlalchemy import SQLAlchemy

from read_model import Base
from web.jwt_setup import VerifiedTokenCache

# The tables belong to ``read_model``; Flask-SQLAlchemy only lends its session and engine.
db = SQLAlchemy(metadata=Base.metadata)
jwt = VerifiedTokenCache()  # the same client token, verified once per process
