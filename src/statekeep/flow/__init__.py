"""Flow control: how often, how soon and how many times work is tried.

Today this holds the one retry policy the rest of statekeep uses (write-behind
batches, durable subscriptions, backends retrying a deadlock). The flow
package stays a leaf: it imports the standard library and statekeep.errors only,
so every layer, backends included, may use it.
"""

from ._backoff import Backoff, Retry

__all__ = ["Backoff", "Retry"]
