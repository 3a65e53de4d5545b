"""The Dagster shell: resources, one module per layer of assets, automation. Thin: load, call, validate, write."""

import warnings

import dagster as dg

# Used on purpose, and each would print once per asset on every start of the code location: partition
# ranges in one run (``backfill_policy``) and links from an asset to its source (code references).
warnings.filterwarnings("ignore", message=r"(Parameter `backfill_policy`|Class `(CodeReferencesMetadataValue|"
                        r"LocalFileCodeReference)`|Function `with_source_code_references`)", category=dg.BetaWarning)
