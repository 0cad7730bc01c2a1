import ArgumentParser

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure a running server.",
        subcommands: [
            BenchRPC.self, BenchJobs.self, BenchLocks.self, BenchCron.self, BenchWebhooks.self, BenchHTTP.self,
            BenchRuns.self, BenchWorker.self,
        ])
}
