import ArgumentParser
import Foundation

// `wharf serve` takes each setting from its flag, else WHARF_*, else --config FILE (ServeSettings).
var arguments = Array(CommandLine.arguments.dropFirst())
var settings: ServeSettings.Resolution?
if arguments.first == "serve" {
    do {
        settings = try ServeSettings.resolve(Serve.rawArguments(), environment: ProcessInfo.processInfo.environment)
        arguments = ["serve"] + settings!.arguments
    } catch {
        Wharf.exit(withError: error)
    }
}
// What `Wharf.main(arguments)` does, with a refused setting's source added to its error.
do {
    var command = try Wharf.parseAsRoot(arguments)
    try command.run()
} catch {
    Wharf.exit(withError: settings?.annotated(error) ?? error)
}
