import ArgumentParser

/// The `wharf` command: the server and a client subcommand per method family.
struct Wharf: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wharf",
        abstract: "A coordinator for background work: jobs, cron schedules, locks and webhooks over JSON-RPC.",
        subcommands: [
            Serve.self, Call.self, Enqueue.self, Jobs.self, Queues.self, Cron.self, Lock.self, Webhooks.self,
            Events.self, Runs.self, Batches.self, ServerCommands.self, Methods.self, Bench.self, Top.self,
        ])
}
