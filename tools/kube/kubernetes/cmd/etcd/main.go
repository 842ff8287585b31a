// Command etcd is etcd's server built at the version Kubernetes' own go.mod pins (go.etcd.io/etcd/server/v3),
// so it shares its compiled dependencies (gRPC, protobuf, prometheus, zap) with kube-apiserver in one
// `go build`. It is the storage of the test cluster.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
