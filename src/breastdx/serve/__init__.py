"""The web service: a FastAPI app with a REST API and a web page for clinicians' research use.

``breastdx serve`` runs it; :func:`breastdx.serve.app.create_app` builds it from
:class:`breastdx.serve.settings.ServeSettings`. Research use only: not for diagnosis.
"""

from breastdx.serve.app import create_app, running_server
from breastdx.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app", "running_server"]
