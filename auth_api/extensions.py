"""Extension singletons of the write side, bound to an app in ``create_app``."""

from flask_jwt_extended import JWTManager
from flask_sqlalchemy import SQLAlchemy

db = SQLAlchemy()
jwt = JWTManager()
