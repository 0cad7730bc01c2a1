import ArgumentParser
import Foundation
import WharfClient

/// `wharf top`: a view of queues, schedules, webhook endpoints and locks that refreshes in the terminal,
/// read from the server's `GET /metrics` (Protocol/http.md) over one kept-alive HTTP connection.
struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "top", abstract: "A refreshing view of queues, schedules, endpoints and locks (from GET /metrics)."
    )

    @OptionGroup var address: HTTPAddress
    @Option(help: "Seconds between refreshes.") var interval = 2.0
    @Flag(help: "Print one view and exit (no screen clearing).") var once = false

    func run() throws {
        let (host, port) = try address.hostPort()
        var connection = try BlockingHTTPConnection(host: host, port: port, timeoutSeconds: 10)
        var previous: (samples: [MetricSample], at: Date)?
        while true {
            let reply: BlockingHTTPConnection.Reply
            do {
                reply = try connection.request("GET", "/metrics")
            } catch {
                // A kept-alive connection the server closed (idle timeout, restart): one new try.
                connection = try BlockingHTTPConnection(host: host, port: port, timeoutSeconds: 10)
                reply = try connection.request("GET", "/metrics")
            }
            guard reply.status == 200 else { throw ValidationError("GET /metrics answered \(reply.status)") }
            let samples = MetricsText.parse(reply.text)
            let at = Date()
            let view = TopView(
                now: samples, previous: previous.map { ($0.samples, at.timeIntervalSince($0.at)) })
            let stamp = ISO8601DateFormatter().string(from: at)
            let text = view.render(title: "wharf top  \(address.http)  \(stamp)")
            if once {
                print(text, terminator: "")
                return
            }
            // Home and clear, then the view.
            FileHandle.standardOutput.write(Data(("\u{1B}[H\u{1B}[2J" + text).utf8))
            previous = (samples, at)
            Thread.sleep(forTimeInterval: max(0.2, interval))
        }
    }
}

/// `--http HOST:PORT`: the server's HTTP side door, for the commands that read it.
struct HTTPAddress: ParsableArguments {
    @Option(help: "The server's HTTP address, HOST:PORT (default: $WHARF_HTTP or 127.0.0.1:7412).")
    var http = ProcessInfo.processInfo.environment["WHARF_HTTP"] ?? "127.0.0.1:7412"

    func hostPort() throws -> (String, Int) { try parseHostPort(http) }
}
