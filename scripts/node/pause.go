// The pod sandbox's process (what registry.k8s.io/pause runs): it holds the pod's namespaces,
// reaps the zombies handed to it as PID 1, and exits on SIGINT or SIGTERM.
// Built static by scripts/install-node.sh into the image registry.k8s.io/pause:3.10.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
