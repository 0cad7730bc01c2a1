import ArgumentParser
import Foundation
import WharfClient
import WharfRPC

/// Options shared by every client subcommand.
struct ClientOptions: ParsableArguments {
    @Option(help: "Server address, HOST:PORT.")
    var server = defaultServer

    @Option(help: "Token to present in session.hello (default: $WHARF_TOKEN; the environment keeps it out of `ps`).")
    var token: String? = ProcessInfo.processInfo.environment["WHARF_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }

    @Flag(help: "Print JSON instead of text.")
    var json = false

    @OptionGroup(title: "TLS") var tls: ClientTLSOptions

    func connect() throws -> BlockingConnection {
        let (host, port) = try parseHostPort(server)
        let c = try BlockingConnection(host: host, port: port, tls: try tls.context())
        if let token {
            _ = try c.call("session.hello", ["token": .string(token), "client": "wharf-cli"])
        }
        return c
    }
}

struct Call: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Call any method: wharf call server.info, wharf call jobs.get '{\"id\":\"1\"}'.")

    @OptionGroup var options: ClientOptions

    @Argument(help: "Method name.")
    var method: String

    @Argument(help: "Params as a JSON object.")
    var params: String?

    func run() throws {
        let c = try options.connect()
        var p: JSON? = nil
        if let params {
            do { p = try JSONParser.parse(params) } catch { throw ValidationError("params are not JSON: \(error)") }
        }
        do {
            let result = try c.call(method, p)
            print(result.text)
        } catch let e as RPCError {
            FileHandle.standardError.write(Data("error: \(e.message) \(e.data?.text ?? "")\n".utf8))
            throw ExitCode(2)
        }
    }
}

/// `$WHARF_SERVER`, or the address `wharf serve` listens on by default.
let defaultServer = ProcessInfo.processInfo.environment["WHARF_SERVER"] ?? "127.0.0.1:7411"
