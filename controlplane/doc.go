// Package controlplane will own the thin control plane: topology from
// config, link-state adverts flooded over KM links, key-aware shortest
// paths (cost rises as pad stock falls), rerouting on stock, link, QBER and
// QKD-module faults, component states set by operators, static routes, and
// the admin API. It computes next hops for the dataplane and never touches
// key bytes.
package controlplane
