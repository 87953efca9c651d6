import { Mqtt } from 'azure-iot-device-mqtt'
import { sdkSuite } from './sdk-suite.js'
import { x509Suite } from './x509-suite.js'

// The SDK suites bind 8883 (the SDK's default port) in turn; the X.509 registration suite uses a free port.
sdkSuite('Mqtt (TLS, 8883)', Mqtt, 'tls', 'sas')
sdkSuite('Mqtt (TLS, 8883)', Mqtt, 'tls', 'x509')
x509Suite('Mqtt (TLS)', Mqtt, 'tls')
