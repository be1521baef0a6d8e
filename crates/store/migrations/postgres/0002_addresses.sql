-- Static addresses handed to VMs from the infrastructure's pools (`proxmox.ipv4`, …): one
-- resource holds at most one address per pool, and an address belongs to at most one resource.
CREATE TABLE addresses (
    pool TEXT NOT NULL,
    address TEXT NOT NULL,
    operator TEXT NOT NULL,
    resource TEXT NOT NULL,
    allocated_at BIGINT NOT NULL,
    PRIMARY KEY (pool, address),
    UNIQUE (pool, operator, resource)
);

CREATE INDEX addresses_by_resource ON addresses (operator, resource);
