import ArgumentParser
import Foundation

// `wharf serve` takes each setting from its flag, else WHARF_*, else --config FILE (ServeSettings).
var arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "serve" {
    do {
        arguments = ["serve"] + (try ServeSettings.resolve(Serve.rawArguments(), environment: ProcessInfo.processInfo.environment)).arguments
    } catch {
        Wharf.exit(withError: error)
    }
}
Wharf.main(arguments)
