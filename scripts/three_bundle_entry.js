// Entry of the report's vendored three.js bundle (scripts/build_three_bundle.sh): the pieces the
// report's 3D viewers use, exposed as one global so a classic <script> works from file://.
import {
  AmbientLight, Box3, Color, DirectionalLight, HemisphereLight, MathUtils, Mesh, MeshStandardMaterial,
  PerspectiveCamera, Scene, Sphere, Vector3, WebGLRenderer, DoubleSide, SRGBColorSpace, REVISION,
} from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';

window.IMPAX_THREE = {
  AmbientLight, Box3, Color, DirectionalLight, HemisphereLight, MathUtils, Mesh, MeshStandardMaterial,
  PerspectiveCamera, Scene, Sphere, Vector3, WebGLRenderer, DoubleSide, SRGBColorSpace, REVISION,
  OrbitControls, GLTFLoader,
};
