import ArgumentParser
import Foundation
import WharfRPC

/// Every protocol method and the command that calls it, or why no command does. A test compares the
/// methods with Protocol/openrpc.json and runs each command's --help, so a method added to the server
/// without a command here fails it.
enum MethodCoverage {
    enum Route {
        /// The subcommand words after `wharf`.
        case command(String)
        /// Reached only through `wharf call` (or a client library), and why.
        case callOnly(String)
    }

    static let workerOnly =
        "worker protocol: a lease belongs to the connection that took it and ends when that connection closes, so a one-shot command cannot hold one; use a worker (Python Worker, Swift WharfClient)"

    static let table: KeyValuePairs<String, Route> = [
        "server.ping": .command("server ping"),
        "server.info": .command("server info"),
        "server.health": .command("server health"),
        "server.replicas": .command("server replicas"),
        "session.hello": .callOnly("every client command sends it when given --token or $WHARF_TOKEN"),
        "rpc.discover": .callOnly("the OpenRPC document, for tools; GET /openrpc.json on the HTTP port serves the same"),
        "jobs.enqueue": .command("enqueue"),
        "jobs.enqueueBatch": .command("jobs enqueue-batch"),
        "jobs.lease": .callOnly(workerOnly),
        "jobs.heartbeat": .callOnly(workerOnly),
        "jobs.complete": .callOnly(workerOnly),
        "jobs.fail": .callOnly(workerOnly),
        "jobs.cancel": .command("jobs cancel"),
        "jobs.retry": .command("jobs retry"),
        "jobs.get": .command("jobs get"),
        "jobs.wait": .command("jobs wait"),
        "jobs.list": .command("jobs list"),
        "queues.list": .command("queues list"),
        "queues.stats": .command("queues stats"),
        "queues.configure": .command("queues configure"),
        "queues.pause": .command("queues pause"),
        "queues.resume": .command("queues resume"),
        "locks.acquire": .command("lock acquire"),
        "locks.renew": .command("lock renew"),
        "locks.release": .command("lock release"),
        "locks.get": .command("lock get"),
        "locks.list": .command("lock list"),
        "cron.upsert": .command("cron upsert"),
        "cron.get": .command("cron get"),
        "cron.list": .command("cron list"),
        "cron.remove": .command("cron remove"),
        "cron.pause": .command("cron pause"),
        "cron.resume": .command("cron resume"),
        "cron.trigger": .command("cron trigger"),
        "cron.preview": .command("cron preview"),
        "webhooks.register": .command("webhooks register"),
        "webhooks.update": .command("webhooks update"),
        "webhooks.get": .command("webhooks get"),
        "webhooks.list": .command("webhooks list"),
        "webhooks.remove": .command("webhooks remove"),
        "webhooks.test": .command("webhooks test"),
        "webhooks.health": .command("webhooks health"),
        "webhooks.rotateSecret": .command("webhooks rotate-secret"),
        "webhooks.enable": .command("webhooks enable"),
        "webhooks.send": .command("webhooks send"),
        "webhooks.deliveries": .command("webhooks deliveries"),
        "webhooks.redeliver": .command("webhooks redeliver"),
        "webhooks.recover": .command("webhooks recover"),
        "events.subscribe": .command("events watch"),
        "events.unsubscribe": .callOnly(
            "ends part of a subscription on a connection that stays open; wharf events watch ends its own by exiting"),
        "runs.get": .command("runs get"),
        "runs.list": .command("runs list"),
        "runs.cancel": .command("runs cancel"),
        "batches.get": .command("batches get"),
    ]


}

struct Methods: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List every protocol method and the command that calls it (the rest: wharf call METHOD PARAMS).")

    @Flag(help: "Print JSON: {method: {command} or {callOnly: reason}}.") var json = false

    func run() throws {
        if json {
            var o = JSONObject()
            for (method, route) in MethodCoverage.table {
                switch route {
                case .command(let c): o[method] = ["command": .string(c)]
                case .callOnly(let why): o[method] = ["callOnly": .string(why)]
                }
            }
            print(JSON.object(o).text)
            return
        }
        let width = MethodCoverage.table.map { $0.key.count }.max() ?? 0
        for (method, route) in MethodCoverage.table {
            let pad = String(repeating: " ", count: width - method.count + 2)
            switch route {
            case .command(let c): print("\(method)\(pad)wharf \(c)")
            case .callOnly(let why): print("\(method)\(pad)wharf call \(method) ...  (\(why))")
            }
        }
    }
}
