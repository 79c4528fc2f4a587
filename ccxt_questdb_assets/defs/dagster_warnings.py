"""Two warnings Dagster 1.13 raises about its own code, silenced where the project's definitions load.

Both fire on paths the project uses as documented, and say nothing the project can act on:

* a multi-partition run request (the refresh schedule's, one partition of a date x symbol asset)
  is given the dimension tags ``dagster/partition/date`` and ``dagster/partition/symbol`` by
  Dagster, whose own tag check then calls those keys non-compliant;
* a nested resource (the IO manager's ``questdb``) is initialised through
  ``InitResourceContext.replace_config``, which reads the context's own deprecated ``dagster_run``.

Every other warning stays visible; the beta and preview features the project chose are silenced
only where they are used (``asset_options.chosen_features``).
"""

import warnings

warnings.filterwarnings(
    "ignore", message=r"Non-compliant tag keys like \['dagster/partition/", category=DeprecationWarning
)
warnings.filterwarnings(
    "ignore", message=r"InitResourceContext\.dagster_run is deprecated", category=DeprecationWarning
)
