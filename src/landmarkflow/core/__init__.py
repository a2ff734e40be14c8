"""The contracts every layer shares: errors, the method catalogue, the results layout, the config, logging.

Nothing here imports another layer of the package.
"""
