package node

import (
	"fmt"
	"reflect"

	"github.com/qrelay/qrelay/config"
)

// ReloadError says that a new config changes something a running node
// cannot take without a restart.
type ReloadError struct {
	Section string // the config section that changed ("links", "km", ...)
}

func (e *ReloadError) Error() string {
	return fmt.Sprintf("the new config changes %s:, which takes effect only on restart; only routes: and saes: reload", e.Section)
}

// Reload applies a new config's static routes and SAEs, what SIGHUP may
// change. If the config changes anything else it returns a *ReloadError
// and changes nothing.
func (n *Node) Reload(cfg *config.Config) error {
	old := n.cfg
	for _, s := range []struct {
		name     string
		old, new any
	}{
		{"node", old.Node, cfg.Node}, {"tls", old.TLS, cfg.TLS}, {"km", old.KM, cfg.KM},
		{"links", old.Links, cfg.Links}, {"storage", old.Storage, cfg.Storage}, {"pools", old.Pools, cfg.Pools},
		{"control", old.Control, cfg.Control}, {"api", old.API, cfg.API},
	} {
		if !reflect.DeepEqual(s.old, s.new) {
			return &ReloadError{Section: s.name}
		}
	}
	if err := n.router.SetStatic(staticRoutes(cfg.Routes)); err != nil {
		return fmt.Errorf("routes: %w", err)
	}
	n.saes.Store(&cfg.SAEs)
	n.log.Info("config reloaded", "routes", len(cfg.Routes), "saes", len(cfg.SAEs))
	return nil
}

// SAEs returns the applications the node serves, as last loaded.
func (n *Node) SAEs() []config.SAE { return *n.saes.Load() }
