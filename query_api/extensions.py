"""Extension singletons of the read side, bound to an app in ``create_app``."""

from flask_jwt_extended import JWTManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

from read_model import Base

# The tables belong to ``read_model``; Flask-SQLAlchemy only lends its session and engine.
db = SQLAlchemy(metadata=Base.metadata)
migrate = Migrate()
jwt = JWTManager()
