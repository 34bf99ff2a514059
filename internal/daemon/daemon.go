// Package daemon is the body of the qrelay key-manager daemon: it parses
// the command line, loads the node's config, starts the node and runs it
// until SIGTERM or SIGINT, reloading on SIGHUP. cmd/qrelayd is a thin
// main around Main; `qrelayctl daemon` runs the same code, so that one
// binary can run the nodes of a demo network as separate processes.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/qrelay/qrelay/config"
	"github.com/qrelay/qrelay/node"
)

// Version is set at build time with
// -ldflags "-X github.com/qrelay/qrelay/internal/daemon.Version=...".
var Version = "dev"

// ShutdownGrace is how long SIGTERM lets relays in flight finish.
const ShutdownGrace = 10 * time.Second

// Main runs the daemon with the command-line arguments args (without the
// program name), writing its log to stderr, and returns the exit status:
// 0 after a clean stop (or -check, -version), 1 when the config is
// invalid or the node fails, 2 on a usage error (and -h).
//
//	-config node.yaml          run the node
//	-config node.yaml -check   validate the config and exit
//
// It returns when SIGTERM or SIGINT has stopped the node; SIGHUP reloads
// the SAEs and static routes.
func Main(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("qrelayd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "the node's YAML config `file` (required)")
	check := fs.Bool("check", false, "validate the config, print it with secrets redacted, and exit")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stderr, "qrelayd", Version)
		return 0
	}
	if *path == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "qrelayd: give the config file with -config; see qrelayd -h")
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "qrelayd: %v\n", err)
		return 1
	}
	if *check {
		fmt.Fprintf(stderr, "qrelayd: %s is valid\n%s", *path, cfg.Redacted())
		return 0
	}
	log := newLogger(cfg.Node.Log, stderr)
	// Ask for the signals before the node starts, so that none stops the
	// process the default way once it serves.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	n, err := node.New(cfg, node.Options{Logger: log, Version: Version})
	if err != nil {
		log.Error("node failed to start", "err", err)
		return 1
	}
	for sig := range sigs {
		if sig == syscall.SIGHUP {
			reload(n, *path, log)
			continue
		}
		log.Info("stopping", "signal", sig.String(), "grace", ShutdownGrace)
		ctx, cancel := context.WithTimeout(context.Background(), ShutdownGrace)
		err := n.Shutdown(ctx)
		cancel()
		if err != nil {
			return 1
		}
		return 0
	}
	return 0
}

// reload applies what SIGHUP may change: the SAEs and the static routes.
// A config that no longer validates, or that changes anything else, is
// refused and the node runs on unchanged.
func reload(n *node.Node, path string, log *slog.Logger) {
	cfg, err := config.Load(path)
	if err != nil {
		log.Error("SIGHUP: config not reloaded; the node runs on with the old one", "err", err)
		return
	}
	if err := n.Reload(cfg); err != nil {
		var re *node.ReloadError
		if errors.As(err, &re) {
			log.Error("SIGHUP: config not reloaded; restart the node to apply it", "err", err)
			return
		}
		log.Error("SIGHUP: reload failed", "err", err)
		return
	}
	log.Info("SIGHUP: config reloaded", "routes", len(cfg.Routes), "saes", len(cfg.SAEs))
}

// newLogger makes the slog logger the config's node.log asks for.
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var lvl slog.Level
	switch c.Level {
	case config.LogDebug:
		lvl = slog.LevelDebug
	case config.LogWarn:
		lvl = slog.LevelWarn
	case config.LogError:
		lvl = slog.LevelError
	}
	o := &slog.HandlerOptions{Level: lvl}
	if c.Format == config.LogJSON {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}
