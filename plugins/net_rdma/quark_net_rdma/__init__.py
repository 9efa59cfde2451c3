"""quark-net-rdma: TSoR (TCP over RDMA) for Quark sandboxes."""

__version__ = "0.1.0"
